"""kube-proxy's part of the agent: EndpointSlices from changed keys, and the Services table.

From a pass's changes it finds the Services whose object or endpoints changed
(model/endpoints.py's EndpointIndex), hands exactly those to the proxy (services/proxy.py,
which compiles and writes their difference), flushes UDP conntrack entries of endpoints
that went away, and keeps br_netfilter on only while a Service has a backend on this
node's bridge (or a NetworkPolicy needs bridged frames judged).
"""

from __future__ import annotations

import os
import sys
import time
from collections import ChainMap
from typing import Iterable, Mapping

from ..kernel import conntrack, nft, sysctl
from ..model.endpoints import EndpointIndex, kube_dns, node_endpoints, pod_view
from ..model.ingress import served_by_nodes
from ..model.labels import matches
from ..model.services import Endpoint, Service
from ..services.compile import NodeContext
from ..services.proxy import ServiceProxy
from ..sources.cache import Cache, Changes
from .metrics import AgentMetrics


class ServicesController:
    def __init__(self, node: str, metrics: AgentMetrics) -> None:
        self.node, self.metrics = node, metrics
        self.index: EndpointIndex | None = None
        self.services: dict[str, Service] = {}  # every Service and kube-dns, kept by changed keys
        self.served: set[str] = set()           # those with a ClusterIP (not headless, not ExternalName)
        self.local: set[str] = set()            # those with a backend on this node's bridge
        self.proxy: ServiceProxy | None = None  # what the kernel holds, for partial syncs
        self.udp_ips: dict[str, set[str]] = {}
        self.endpoints: Mapping[str, list[Endpoint]] = {}
        self.proxied_by_nodes: set[str] = set()  # Services whose endpoints are the nodes (model/ingress.py)
        self.started = time.time()  # changes older than the agent are not its programming latency

    def sync(self, cache: Cache, changes: Changes, full: bool, alive: set[str]) -> tuple[set[str], set[str]]:
        """One pass; (the Services touched, the pods changed), for the controllers that follow."""
        state, nodes = cache.state(), cache.node_dicts()
        if full or self.index is None:
            self.index = EndpointIndex()
            changed_svcs, changed_pods = set(cache.services), set(cache.pods)
        else:
            changed_svcs = set(changes.get("service", ()))
            changed_pods = set(changes.get("pod", ())) | set(changes.get("podstatus", ()))
            if "lease" in changes:  # a node came or went: its pods' readiness with it
                changed_pods |= {k for k, p in cache.pods.items() if p.node_name in changes["lease"]}
        views = {k: pod_view(p, cache.pod_status.get(k), p.node_name in alive)
                 if (p := cache.pods.get(k)) is not None else None for k in changed_pods}
        touched = self.index.update(cache.services, changed_svcs, views) | changed_svcs
        dns_svc, dns_eps = kube_dns(state, nodes)
        if full or "node" in changes or self.proxy is None:
            touched.add(dns_svc.key)
        if full:
            self.services, self.served, self.proxied_by_nodes = dict(cache.services), set(), set()
        for key in changed_svcs:
            svc = cache.services.get(key)
            if svc is None:
                self.services.pop(key, None)
            else:
                self.services[key] = svc
            (self.served.add if svc is not None and svc.cluster_ip and not svc.headless else self.served.discard)(key)
            (self.proxied_by_nodes.add if svc is not None and served_by_nodes(svc.namespace, svc.name, svc.selector is not None)
             else self.proxied_by_nodes.discard)(key)
        self.services[dns_svc.key] = dns_svc
        by_nodes = {dns_svc.key: dns_eps}
        live = {n: v for n, v in nodes.items() if n in alive}
        for key in self.proxied_by_nodes:  # the ingress's and the Gateways' HAProxy on every live node
            by_nodes[key] = node_endpoints(self.services[key], live)
            if full or "node" in changes or "lease" in changes:
                touched.add(key)
        self.endpoints = ChainMap(by_nodes, self.index.endpoints)
        ctx = NodeContext(self.node, nodes[self.node]["ip"], state.cluster.pod_cidr, state.cluster.service_cidr)
        if self.proxy is None or self.proxy.ctx != ctx:
            self.proxy = ServiceProxy(ctx, nft.run)
        m = self.metrics
        try:
            with m.timed(m.proxy_sync, kind="full" if self.proxy.full_sync else "partial"):
                self.proxy.sync(self.services, self.endpoints, None if full else touched)
        except Exception:
            m.proxy_failures.inc()
            raise
        m.proxy_last.set_to_current_time()
        if not full:
            for latency in programming_latencies(cache, touched, changes.get("podstatus", ()), self.started):
                m.programming.observe(latency)
        m.services.set(len(self.served) + 1)  # and kube-dns
        m.endpoints.set(sum(map(len, self.index.endpoints.values())) + len(dns_eps))
        for key in touched:  # a pod of this node behind a ClusterIP (kube-dns's endpoints are nodes)
            if key in self.served and any(e.node == self.node for e in self.endpoints.get(key, ())):
                self.local.add(key)
            else:
                self.local.discard(key)
        self.flush_stale_udp(touched)
        return touched, changed_pods

    def resync(self) -> None:
        """After a failure: the next pass writes the whole table again."""
        if self.proxy is not None:
            self.proxy.full_sync = True

    def flush_stale_udp(self, touched: set[str]) -> None:
        """When a UDP endpoint goes away, so do the conntrack entries that still point at it."""
        for key in touched:
            svc = self.services.get(key)
            now = {e.ip for e in self.endpoints.get(key, [])} if svc is not None and any(
                p.protocol == "UDP" for p in svc.ports) else set()
            for ip in self.udp_ips.get(key, set()) - now:
                try:
                    conntrack.delete_udp_from(ip)
                except OSError as e:  # the flows then end with their timeout, as they would have
                    print(f"agent {self.node}: conntrack: cannot delete UDP flows from {ip}: {e}", file=sys.stderr)
            if now:
                self.udp_ips[key] = now
            else:
                self.udp_ips.pop(key, None)


def programming_latencies(cache: Cache, touched: set[str], changed_statuses: Iterable[str], since: float,
                          now: float | None = None) -> list[float]:
    """kube-proxy's network programming latency, as its EndpointSlice trigger time defines it:
    for each Service whose table entries a pass rewrote, the time from the earliest pod change
    that concerned it (a changed status of a pod its selector picks, dated by the pod's node) to
    now, the table written. A Service changed by its own object (no pod moved) has no trigger
    time and is not counted, as in Kubernetes; neither are changes made before `since`."""
    now = time.time() if now is None else now
    moved = [(pod, st.changed) for key in changed_statuses
             if (st := cache.pod_status.get(key)) is not None and st.changed >= since
             and (pod := cache.pods.get(key)) is not None]
    out = []
    for key in touched:
        svc = cache.services.get(key)
        if svc is None or svc.selector is None or not moved:
            continue
        times = [t for pod, t in moved if pod.namespace == svc.namespace and matches({"matchLabels": svc.selector},
                                                                                     pod.labels)]
        if times:
            out.append(max(0.0, now - min(times)))
    return out


def set_bridge_netfilter(on: bool) -> None:
    """Bridged frames pass the IP hooks only when something needs them: a Service backend on
    this bridge (its reply to a client on the same bridge must meet conntrack to be un-DNATed)
    or a NetworkPolicy (same-node pod traffic must be judged). Until then bridged pod traffic
    skips them and runs at veth speed; the agent turns it on when first needed and leaves it on.
    The sysctls are per network namespace: this node only."""
    for fam in ("iptables", "ip6tables"):
        name = f"net.bridge.bridge-nf-call-{fam}"
        if os.path.exists(sysctl.path(name)):
            sysctl.write(name, 1 if on else 0)
