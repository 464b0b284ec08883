"""EndpointSlices kept current by changed keys: the EndpointSlice controller, incremental and pure.

`EndpointIndex.update` takes the Services and pods that changed and recomputes only the
Services they touch: a changed Service, or a Service in a changed pod's namespace whose
selector matches the pod's labels before or after. It answers which Services' endpoints
changed, which is what the proxy, DNS and the health-check servers need to hear. The
result equals `derive_endpoints` over everything (a property test checks it).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .labels import matches
from .objects import Pod
from .registry import PodStatus
from .objects import ClusterState
from .services import Endpoint, PodView, Service, ServicePort, derive_endpoints


def pod_view(pod: Pod, status: PodStatus | None, node_alive: bool = True) -> PodView | None:
    """A pod as endpoints see it: running on its node with an address, and not terminating.

    A pod whose node has lost its lease is not ready, whatever it last said (the node
    lifecycle controller's rule): its endpoints stop taking new connections."""
    if status is None or status.node != pod.node_name or not status.ip or status.terminating:
        return None
    return PodView(pod.namespace, pod.name, pod.labels, pod.node_name, status.ip, status.ready and node_alive, False,
                   tuple((p.name, p.protocol, p.port) for p in pod.ports), pod.hostname, pod.subdomain)


def kube_dns(state: ClusterState, nodes: dict[str, dict[str, Any]]) -> tuple[Service, list[Endpoint]]:
    """The `kube-system/kube-dns` Service at .10 of the service range; every node's agent serves it.

    internalTrafficPolicy Local: a pod's queries go to its own node's server (NodeLocal
    DNSCache's idea), never across the underlay from a pod address."""
    ip = state.cluster.dns_ip
    ports = (ServicePort("dns", "UDP", 53, 53), ServicePort("dns-tcp", "TCP", 53, 53),
             ServicePort("metrics", "TCP", 9153, 9153))
    svc = Service("kube-system", "kube-dns", "ClusterIP", ip, ports, None, internal_policy_local=True)
    eps = [Endpoint(n["ip"], name, f"node/{name}", ports=(("dns", "UDP", 53), ("dns-tcp", "TCP", 53),
                                                           ("metrics", "TCP", 9153)))
           for name, n in sorted(nodes.items())]
    return svc, eps


def node_endpoints(svc: Service, nodes: dict[str, dict[str, Any]]) -> list[Endpoint]:
    """A Service served by every node itself (the ingress's HAProxy): its target ports on each node's address."""
    ports = tuple((p.name, p.protocol, p.target_port if isinstance(p.target_port, int) else p.port) for p in svc.ports)
    return [Endpoint(n["ip"], name, f"node/{name}", ports=ports) for name, n in sorted(nodes.items())]


class EndpointIndex:
    def __init__(self) -> None:
        self.endpoints: dict[str, list[Endpoint]] = {}
        self.services: dict[str, Service] = {}
        self.views: dict[str, PodView] = {}
        self._pods_by_ns: dict[str, dict[str, PodView]] = {}
        self._services_by_ns: dict[str, set[str]] = {}

    def update(self, services: Mapping[str, Service], changed_services: Iterable[str],
               pods: Mapping[str, PodView | None]) -> set[str]:
        """`services`: every Service now; `changed_services`: keys that may differ from before;
        `pods`: each changed pod's view now (None: no longer an endpoint). Returns the Services
        whose endpoints changed (appeared, went away, or differ)."""
        dirty: set[str] = set()
        for key in changed_services:
            old, new = self.services.get(key), services.get(key)
            if old is not None:
                self._services_by_ns.get(old.namespace, set()).discard(key)
            if new is None:
                self.services.pop(key, None)
            else:
                self.services[key] = new
                self._services_by_ns.setdefault(new.namespace, set()).add(key)
            dirty.add(key)
        for key, view in pods.items():
            old_view = self.views.pop(key, None)
            ns = key.split("/", 1)[0]
            by_ns = self._pods_by_ns.setdefault(ns, {})
            by_ns.pop(key, None)
            if view is not None:
                self.views[key] = view
                by_ns[key] = view
            for skey in self._services_by_ns.get(ns, ()):
                if skey in dirty:
                    continue
                sel = self.services[skey].selector
                if sel is None:
                    continue
                if any(v is not None and matches({"matchLabels": sel}, v.labels) for v in (old_view, view)):
                    dirty.add(skey)
        changed = set()
        to_derive: dict[str, list[Service]] = {}
        for key in dirty:
            have = self.services.get(key)
            if have is None:
                if self.endpoints.pop(key, None) is not None:
                    changed.add(key)
            else:
                to_derive.setdefault(have.namespace, []).append(have)
        for ns, svcs in to_derive.items():  # one derivation per namespace: pods sorted and matched once
            derived = derive_endpoints(svcs, list(self._pods_by_ns.get(ns, {}).values()))
            for s in svcs:
                eps = derived.get(s.key)
                if eps is None:
                    if self.endpoints.pop(s.key, None) is not None:
                        changed.add(s.key)
                elif self.endpoints.get(s.key) != eps:
                    self.endpoints[s.key] = eps
                    changed.add(s.key)
        return changed
