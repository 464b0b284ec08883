"""Round trips from this node to the others and to some of their pods, as goldpinger measures them.

A thread of the agent opens a TCP connection, once a second, to every other live node (its
agent's metrics port, which every node has) and to up to `PODS_PER_NODE` pods of that node
(their first TCP container port): the connect time is the round trip, a connection that does
not complete within `TIMEOUT` is a loss (a refusal is an answer: the path works). Results go
to `gingham_peer_rtt_seconds` (histogram) and `gingham_peer_probes_total{result}`, from which
the lab's Prometheus rules compute the loss ratio between nodes.
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from typing import Any

from .metrics import AgentMetrics

INTERVAL = 1.0
TIMEOUT = 1.0
PODS_PER_NODE = 3


def probe(ip: str, port: int, timeout: float = TIMEOUT, ports: set[int] | None = None) -> float | None:
    """Seconds to connect (or to be refused), None when nothing came back in time. The local
    port goes into `ports` before the connection (the flow recorder leaves the pinger's own
    connections out)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind(("0.0.0.0", 0))
    if ports is not None:
        ports.add(s.getsockname()[1])
    t = time.perf_counter()
    try:
        s.connect((ip, port))
    except ConnectionRefusedError:
        pass  # the peer answered with a reset: a round trip all the same
    except OSError:
        return None
    finally:
        s.close()
    return time.perf_counter() - t


def targets(node: str, nodes: dict[str, Any], pods: list[Any], alive: set[str], metrics_port: int) -> list[tuple[str, str, str, int]]:
    """(target node, kind, ip, port) to probe this round: the other live nodes, and some of their pods."""
    out = [(name, "node", info.ip, metrics_port) for name, info in sorted(nodes.items()) if name != node and name in alive]
    per: dict[str, int] = {}
    for ip, pod_node, port in pods:
        if pod_node != node and pod_node in alive and per.get(pod_node, 0) < PODS_PER_NODE:
            per[pod_node] = per.get(pod_node, 0) + 1
            out.append((pod_node, "pod", ip, port))
    return out


class Pinger:
    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics
        self.targets: list[tuple[str, str, str, int]] = []  # replaced whole by the agent after a pass
        self.ports: set[int] = set()  # local ports of this round's probes and the last one's (one set, kept)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="pinger", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(TIMEOUT + 1)

    def _run(self) -> None:
        """A round a second; a round's local ports stay in `ports` through the next round, by which
        time the recorder has read their conntrack events."""
        m = self.metrics
        rounds: collections.deque[set[int]] = collections.deque()
        while not self.stopping.wait(INTERVAL):
            mine: set[int] = set()
            for node, kind, ip, port in list(self.targets):
                had = set(self.ports)
                rtt = probe(ip, port, ports=self.ports)  # in the set before the connection starts
                mine |= self.ports - had
                m.peer_probes.labels(node, kind, "lost" if rtt is None else "ok").inc()
                m.peer_probes.labels(node, kind, "ok" if rtt is None else "lost")  # both series exist: a ratio has both
                if rtt is not None:
                    m.peer_rtt.labels(node, kind).observe(rtt)
            rounds.append(mine)
            if len(rounds) > 2:
                self.ports.difference_update(rounds.popleft() - rounds[-1] - rounds[0])
