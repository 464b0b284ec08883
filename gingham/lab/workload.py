"""The pod workload: answers on every given port with the pod's name (agnhost serve-hostname),
and HTTP requests with an echo of the request (the Gateway API conformance echo server's).

TCP: a connection that sends an HTTP/1.x request gets 200 and a JSON echo: `path` (with the
query), `host` (the Host header as received), `method`, `proto`, `headers` (canonical names,
each a list of values), `namespace` and `pod`; with `Date`, `Content-Type`, `Content-Length`
and `Server`, then the connection closes; a WebSocket upgrade gets 101 and then every byte
echoed back while the connection lasts (no framing: what a proxy must not cut). Any other connection gets "<name>\\n": at once
when it sends something else, or after a moment of silence (`QUIET` seconds; the lab's
probe says "who?" so that it need not wait). UDP: any datagram gets "<name>\\n" back. HTTP
(`--http PORT`, the port of an httpGet readinessProbe that is not one of the pod's container
ports): always HTTP. Stdlib only and single-threaded (selectors), so a lab of many pods
stays light.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
from email.utils import formatdate

QUIET = 0.15      # seconds a silent TCP client waits for the name
MAX_REQUEST = 65536
METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE ")


def canonical(name: str) -> str:
    """Go's CanonicalHeaderKey: x-forwarded-for -> X-Forwarded-For."""
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def could_be_http(buf: bytes) -> bool:
    return any(m.startswith(buf[:len(m)]) or buf.startswith(m) for m in METHODS)


def echo(request: bytes, namespace: str, pod: str) -> bytes:
    """The response to one HTTP/1.x request (its head, up to the blank line)."""
    head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    line, *lines = head.split("\r\n")
    method, _, rest = line.partition(" ")
    target, _, proto = rest.rpartition(" ")
    headers: dict[str, list[str]] = {}
    for h in lines:
        name, sep, value = h.partition(":")
        if sep:
            headers.setdefault(canonical(name.strip()), []).append(value.strip())
    body = json.dumps({"path": target, "host": headers.get("Host", [""])[0], "method": method, "proto": proto,
                       "headers": headers, "namespace": namespace, "pod": pod}).encode()
    return (f"HTTP/1.1 200 OK\r\nDate: {formatdate(usegmt=True)}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nServer: gingham-echo\r\nConnection: close\r\n\r\n").encode() + (
        b"" if method == "HEAD" else body)


def upgrade(request: bytes) -> bytes | None:
    """The 101 answer to a WebSocket upgrade request (RFC 6455's Sec-WebSocket-Accept), or None."""
    import base64
    import hashlib
    head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    headers = {n.strip().lower(): v.strip() for n, _, v in (h.partition(":") for h in head.split("\r\n")[1:])}
    if headers.get("upgrade", "").lower() != "websocket" or "sec-websocket-key" not in headers:
        return None
    key = headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    accept = base64.b64encode(hashlib.sha1(key.encode()).digest()).decode()
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode()


def _complete(buf: bytes) -> bool:
    """A request's head is in, and its body (by Content-Length) too."""
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return len(body) >= int(value.strip())
            except ValueError:
                return True
    return True


def serve(name: str, tcp: list[int], udp: list[int], ready: str = "", sctp: list[int] | None = None,
          http: list[int] | None = None, namespace: str = "") -> None:
    sel = selectors.DefaultSelector()
    reply = (name + "\n").encode()
    pending: dict[socket.socket, tuple[float, bytes, str]] = {}  # connection -> (deadline, what came, mode)

    def listen(kind: int, proto: int, port: int, mode: str) -> None:
        """A dual-stack listener; one-to-one SCTP is served like TCP."""
        s = socket.socket(socket.AF_INET6, kind, proto)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        if kind == socket.SOCK_STREAM:
            s.listen(512)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, mode)

    def finish(conn: socket.socket, out: bytes) -> None:
        pending.pop(conn, None)
        try:
            sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        try:
            conn.setblocking(True)
            conn.settimeout(1)
            conn.sendall(out)
        except OSError:
            pass
        finally:
            conn.close()

    for port in tcp:
        listen(socket.SOCK_STREAM, 0, port, "tcp")
    for port in udp:
        listen(socket.SOCK_DGRAM, 0, port, "udp")
    for port in http or []:
        listen(socket.SOCK_STREAM, 0, port, "http")
    for port in sctp or []:
        try:
            listen(socket.SOCK_STREAM, socket.IPPROTO_SCTP, port, "tcp")
        except OSError as e:  # a kernel without SCTP just has no such listener
            print(f"workload {name}: no SCTP on this kernel ({e.strerror}); port {port}/SCTP not served",
                  file=sys.stderr)
    if ready:
        with open(ready, "w") as f:
            f.write("ok")
    while True:
        now = time.monotonic()
        timeout = max(0.0, min(d for d, _, _ in pending.values()) - now) if pending else None
        for key, _ in sel.select(timeout):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            try:
                if key.data in ("tcp", "http"):
                    conn, _ = s.accept()
                    conn.setblocking(False)
                    pending[conn] = (time.monotonic() + (QUIET if key.data == "tcp" else 5.0), b"", key.data)
                    sel.register(conn, selectors.EVENT_READ, "conn")
                elif key.data == "conn":
                    deadline, buf, mode = pending[s]
                    chunk = s.recv(65536)
                    buf += chunk
                    if could_be_http(buf) or mode == "http":
                        if _complete(buf) and (accept := upgrade(buf)) is not None:
                            pending.pop(s)  # a WebSocket: it stays open, its bytes echoed back
                            sel.modify(s, selectors.EVENT_READ, "tunnel")
                            s.setblocking(True)
                            s.sendall(accept)
                            s.setblocking(False)
                        elif _complete(buf) or not chunk or len(buf) > MAX_REQUEST:
                            finish(s, echo(buf, namespace, name) if b"\r\n\r\n" in buf else reply)
                        else:
                            pending[s] = (deadline, buf, mode)
                    else:
                        finish(s, reply)
                elif key.data == "tunnel":
                    chunk = s.recv(65536)
                    if not chunk:
                        raise OSError("closed")
                    s.setblocking(True)
                    s.sendall(chunk)
                    s.setblocking(False)
                else:
                    _, addr = s.recvfrom(2048)
                    s.sendto(reply, addr)
            except OSError:
                if key.data in ("conn", "tunnel"):
                    pending.pop(s, None)
                    try:
                        sel.unregister(s)
                    except (KeyError, ValueError):
                        pass
                    s.close()
                continue
        now = time.monotonic()
        for conn, (deadline, buf, mode) in list(pending.items()):
            if now >= deadline:  # a silent client: the name, as serve-hostname answers on connect
                finish(conn, reply)


def zygote() -> None:
    """Forks workloads on request, each into its pod's network namespace: one Python start
    and one import per node instead of one per pod. A request is a JSON line on stdin
    ({"netns", "log", "args"}); the answer the child's pid on stdout. Children are reaped by
    the kernel (SIGCHLD ignored) and outlive the zygote, which ends when its stdin does
    (its agent went away): a restarted agent finds its pods' workloads still serving."""
    import json
    import os
    import signal

    from ..kernel import cgroups, netns
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                cgroups.join(req.get("cgroup") or [])  # the pod's limits, before it runs anything
                netns.join(req["netns"])
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                null = os.open(os.devnull, os.O_RDONLY)
                log = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.dup2(null, 0)
                os.dup2(log, 1)
                os.dup2(log, 2)
                main(req["args"])
            except BaseException as e:  # noqa: BLE001 - a child must never return into the zygote's loop
                print(f"workload {req.get('args')}: {e!r}", file=sys.stderr, flush=True)
            finally:
                os._exit(1)
        print(pid, flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True)
    p.add_argument("--namespace", default="")
    p.add_argument("--tcp", type=int, action="append", default=[])
    p.add_argument("--udp", type=int, action="append", default=[])
    p.add_argument("--sctp", type=int, action="append", default=[])
    p.add_argument("--http", type=int, action="append", default=[])
    p.add_argument("--ready", default="")
    a = p.parse_args(argv)
    try:
        serve(a.name, a.tcp, a.udp, a.ready, a.sctp, a.http, a.namespace)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    zygote() if sys.argv[1:] == ["--zygote"] else main()

