"""A node's membership: a key held under an etcd lease that its agent keeps alive.

Flannel's subnet lease and kubelet's node Lease in one: while the agent runs, the key
exists; when the agent stops renewing (killed, stopped, cut off), etcd deletes the key
after the TTL and every other node sees its node go. The lease is not revoked when the
agent stops on purpose: a restart within the TTL must not make the node disappear.
"""

from __future__ import annotations

import sys
import threading

from .etcd import Etcd, EtcdError


class NodeLease:
    def __init__(self, etcd: Etcd, key: str, value: bytes, ttl: int) -> None:
        self.etcd, self.key, self.value, self.ttl = etcd, key, value, ttl
        self.lease = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="node-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def _run(self) -> None:
        period = max(self.ttl / 3, 0.2)
        while not self._stop.is_set():
            try:
                if not self.lease or self.etcd.lease_keepalive(self.lease) <= 0:
                    self.lease = self.etcd.lease_grant(self.ttl)
                    self.etcd.put(self.key, self.value, lease=self.lease)
            except EtcdError as e:
                if "not found" in str(e):
                    self.lease = 0  # it lapsed while we were away: take a new one at once
                    continue
                print(f"node lease {self.key}: {e}", file=sys.stderr, flush=True)
                self._stop.wait(min(period, 0.5))
                continue
            self._stop.wait(period)
