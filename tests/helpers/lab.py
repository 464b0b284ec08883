"""Lab test helpers: manifests written from YAML text, connections made from a namespace, and a
server that records who connected."""

from __future__ import annotations

import socket
import textwrap
import threading
import time

from gingham.kernel import netns
from gingham.lab.probe import probe


def manifest(tmp_path, body: str, name: str = "cluster.yaml") -> str:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return str(p)


def from_ns(path: str, host: str, port: int, proto: str = "TCP", timeout: float = 2.0) -> str | None:
    with netns.entered(path):
        return probe(host, port, proto, timeout)


class PeerServer:
    """A TCP server in a pod that records the source address of each connection."""

    def __init__(self, ns: str, port: int) -> None:
        with netns.entered(ns):
            self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.peers: list[str] = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                c, addr = self.sock.accept()
            except OSError:
                continue
            self.peers.append(addr[0])
            c.close()

    def last_peer(self, timeout: float = 2.0) -> str | None:
        deadline = time.monotonic() + timeout
        while not self.peers and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.peers[-1] if self.peers else None

    def close(self) -> None:
        self.stop.set()
        self.t.join(2)
        self.sock.close()
