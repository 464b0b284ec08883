"""Connect to a port and read who answered (the client side of the workload)."""

from __future__ import annotations

import socket


def probe(host: str, port: int, protocol: str = "TCP", timeout: float = 2.0, source: str = "") -> str | None:
    """The answering pod's name, or None when nothing answered in time."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    proto = protocol.upper()
    kind = socket.SOCK_DGRAM if proto == "UDP" else socket.SOCK_STREAM
    try:
        sock = socket.socket(fam, kind, socket.IPPROTO_SCTP if proto == "SCTP" else 0)
    except OSError:
        return None  # SCTP where the kernel has none: nothing can answer
    with sock as s:
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        try:
            if kind == socket.SOCK_STREAM:
                s.connect((host, port))
                s.sendall(b"who?\n")  # the workload answers at once instead of after a quiet moment
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(256)
                    if not chunk:
                        break
                    data += chunk
            else:
                s.sendto(b"who?\n", (host, port))
                data, _ = s.recvfrom(256)
        except OSError:
            return None
    return data.decode(errors="replace").strip() or None
