"""The agent's Prometheus metrics, and Prometheus text over HTTP from a render function.

`AgentMetrics` (prometheus-client, a registry of its own) is served on the node's address
at :10249, kube-proxy's metrics port: Services and NetworkPolicy sync durations by kind,
sync failures, what the tables serve, CNI requests by command, plugin and result, the flow
records by type, verdict and protocol, drops by policy, bytes and packets per pod, and the
conntrack table's fill. The DNS server keeps its CoreDNS-shaped counters on :9153 through
`serve_metrics`.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: nothing is reset
PROGRAMMING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
SYNC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METRICS_PORT = 10249


class AgentMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.proxy_sync = Histogram("gingham_proxy_sync_duration_seconds",
                                    "Time to bring the Services table to the wanted state, nft included",
                                    ["kind"], registry=r, buckets=SYNC_BUCKETS)
        self.programming = Histogram("gingham_network_programming_duration_seconds",
                                     "From a pod's readiness or address changing (its Ready condition's "
                                     "lastTransitionTime, written by its node) to this node's Services table "
                                     "holding the change, per Service it changed (kube-proxy's "
                                     "network_programming_duration_seconds)", registry=r, buckets=PROGRAMMING_BUCKETS)
        self.proxy_last = Gauge("gingham_proxy_sync_last_timestamp_seconds",
                                "When the Services table was last brought up to date", registry=r)
        self.proxy_failures = Counter("gingham_proxy_sync_failures_total",
                                      "Services table writes that failed (the next sync is a full one)", registry=r)
        self.services = Gauge("gingham_proxy_services", "Services this node's table serves (headless ones "
                              "excluded)", registry=r)
        self.endpoints = Gauge("gingham_proxy_endpoints", "Endpoints of those Services", registry=r)
        self.netpol_sync = Histogram("gingham_netpol_sync_duration_seconds",
                                     "Time to compile NetworkPolicy for this node and write the difference",
                                     registry=r, buckets=SYNC_BUCKETS)
        self.policies = Gauge("gingham_netpol_policies", "NetworkPolicies in the cluster", registry=r)
        self.cni = Counter("gingham_cni_requests_total", "CNI requests served on the agent's socket",
                           ["command", "plugin", "result"], registry=r)
        self.cni_duration = Histogram("gingham_cni_request_duration_seconds", "Time to serve a CNI request",
                                      ["command"], registry=r, buckets=SYNC_BUCKETS)
        self.pods = Gauge("gingham_pods", "Pods on this node", ["phase"], registry=r)
        # flow records (agent/flows.py)
        self.flows = Counter("gingham_flows_total", "Flow records: connections started and ended, packets dropped",
                             ["type", "verdict", "protocol"], registry=r)
        self.policy_drops = Counter("gingham_policy_drops_total", "Packets NetworkPolicy dropped, by the policies "
                                    "isolating the pod (no rule of theirs allowed the packet)",
                                    ["policy", "direction", "reason"], registry=r)
        self.pod_bytes = Counter("gingham_pod_bytes_total", "Bytes of ended connections of this node's pods",
                                 ["namespace", "pod", "direction"], registry=r)
        self.pod_packets = Counter("gingham_pod_packets_total", "Packets of ended connections of this node's pods",
                                   ["namespace", "pod", "direction"], registry=r)
        self.flows_lost = Counter("gingham_flow_events_lost_total", "Kernel messages the recorder could not read "
                                  "in time (socket overflows)", ["source"], registry=r)
        self.peer_rtt = Histogram("gingham_peer_rtt_seconds", "TCP connect round trips to other nodes and their pods",
                                  ["target_node", "kind"], registry=r,
                                  buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5, 1.0))
        self.peer_probes = Counter("gingham_peer_probes_total", "Round-trip probes to other nodes and their pods "
                                   "(result: ok or lost)", ["target_node", "kind", "result"], registry=r)
        for source in ("conntrack", "nflog"):  # a series from the start, at 0: a lost message shows as a change
            self.flows_lost.labels(source)
        self.conntrack = Gauge("gingham_conntrack_entries", "Entries in this node's conntrack table", registry=r)
        self.conntrack_max = Gauge("gingham_conntrack_max", "The size of this node's conntrack table", registry=r)

    @contextmanager
    def timed(self, hist: Any, **labels: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            (hist.labels(**labels) if labels else hist).observe(time.perf_counter() - t)

    def render(self) -> str:
        for gauge, name in ((self.conntrack, "nf_conntrack_count"), (self.conntrack_max, "nf_conntrack_max")):
            try:  # read when scraped: the table's fill now
                with open(f"/proc/sys/net/netfilter/{name}") as f:
                    gauge.set(int(f.read()))
            except (OSError, ValueError):
                pass
        return generate_latest(self.registry).decode()


def serve_metrics(host: str, port: int, render: Callable[[], str]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    srv = ThreadingHTTPServer((host, port), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True, name="metrics").start()
    return srv
