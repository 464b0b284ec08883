"""The plugin entry point: a few milliseconds of startup, so the agent path is cheap.

When a gingham node agent listens on its CNI socket in the same network and mount
namespaces, the request (env + stdin) is handed to it and its answer printed: the
agent's netlink sockets and imports are already warm (Multus' thick plugin and
cilium-cni work this way). Otherwise the plugin runs in this process.

Only `_socket`, `os` and `sys` are imported here: `json` and `socket` pull in `re` and
`enum` and would double the start time. Frames are length-prefixed lists of byte strings.
"""

from __future__ import annotations

import os
import sys

SOCKET_ENV = "GINGHAM_CNI_SOCKET"
DEFAULT_SOCKET = "/run/gingham/cni.sock"
PASS_ENV = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH",
            "CNI_NETNS_OVERRIDE", "PATH")
VERSION = b"gingham-cni-1"


def namespace_ids() -> bytes:
    return b"%d:%d" % (os.stat("/proc/self/ns/net").st_ino, os.stat("/proc/self/ns/mnt").st_ino)


def encode(fields: list[bytes]) -> bytes:
    body = b"".join(len(f).to_bytes(4, "big") + f for f in fields)
    return len(body).to_bytes(4, "big") + body


def decode(body: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(body):
        n = int.from_bytes(body[i:i + 4], "big")
        out.append(body[i + 4:i + 4 + n])
        i += 4 + n
    return out


def recv_frame(sock: object) -> list[bytes]:
    head = _recv_exact(sock, 4)
    return decode(_recv_exact(sock, int.from_bytes(head, "big")))


def _recv_exact(sock: object, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))  # type: ignore[attr-defined]
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def via_agent(path: str, plugin: str, stdin: bytes) -> tuple[bytes, int] | None:
    """The agent's answer, or None when no agent can serve us (then we do the work)."""
    import _socket
    env = [x for k in PASS_ENV if k in os.environ for x in (k.encode(), os.environb[k.encode()])]
    try:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            s.settimeout(300)
            s.connect(path)
            s.sendall(encode([VERSION, plugin.encode(), namespace_ids(), stdin, *env]))
            reply = recv_frame(s)
        finally:
            s.close()
    except (OSError, ConnectionError, ValueError):
        return None
    if len(reply) != 3 or reply[0] != b"ok":
        return None
    return reply[2], int(reply[1])


def main(plugin: str) -> None:
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    sock = os.environ.get(SOCKET_ENV, DEFAULT_SOCKET)
    answer = via_agent(sock, plugin, stdin) if sock and os.path.exists(sock) else None
    if answer is None:
        from gingham.cni.plugins import registry
        from gingham.cni.skel import dispatch
        answer = dispatch(os.environ, stdin, registry.get(plugin))
    sys.stdout.buffer.write(answer[0])
    sys.stdout.flush()
    sys.stderr.flush()
    # a plugin process has nothing left to clean up: skip the interpreter's teardown of every
    # module (about 10 ms); its netlink sockets and files close with the process
    os._exit(answer[1])


def loopback() -> None:
    main("loopback")


def bridge() -> None:
    main("bridge")


def host_local() -> None:
    main("host-local")


def portmap() -> None:
    main("portmap")


def bandwidth() -> None:
    main("bandwidth")
