"""The pod workload: answers on every given port with the pod's name (agnhost serve-hostname).

TCP: on connect it writes "<name>\\n" and closes. UDP: any datagram gets "<name>\\n" back.
HTTP (`--http PORT`, the port of an httpGet readinessProbe that is not one of the pod's
container ports): a request gets "200 OK" and the name, as agnhost netexec's /healthz does.
Stdlib only and single-threaded (selectors), so a lab of many pods stays light.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import sys


def serve(name: str, tcp: list[int], udp: list[int], ready: str = "", sctp: list[int] | None = None,
          http: list[int] | None = None) -> None:
    sel = selectors.DefaultSelector()
    reply = (name + "\n").encode()

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

    for port in tcp:
        listen(socket.SOCK_STREAM, 0, port, "tcp")
    for port in udp:
        listen(socket.SOCK_DGRAM, 0, port, "udp")
    for port in http or []:
        listen(socket.SOCK_STREAM, 0, port, "http")
    http_reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
        len(reply), reply)
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
        for key, _ in sel.select():
            s = key.fileobj
            assert isinstance(s, socket.socket)
            try:
                if key.data in ("tcp", "http"):
                    conn, _ = s.accept()
                    try:
                        conn.settimeout(1)
                        if key.data == "http":
                            conn.recv(4096)  # the request (its line is all a probe sends)
                        conn.sendall(http_reply if key.data == "http" else reply)
                    finally:
                        conn.close()
                else:
                    _, addr = s.recvfrom(2048)
                    s.sendto(reply, addr)
            except OSError:
                continue


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
    p.add_argument("--tcp", type=int, action="append", default=[])
    p.add_argument("--udp", type=int, action="append", default=[])
    p.add_argument("--sctp", type=int, action="append", default=[])
    p.add_argument("--http", type=int, action="append", default=[])
    p.add_argument("--ready", default="")
    a = p.parse_args(argv)
    try:
        serve(a.name, a.tcp, a.udp, a.ready, a.sctp, a.http)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    zygote() if sys.argv[1:] == ["--zygote"] else main()

