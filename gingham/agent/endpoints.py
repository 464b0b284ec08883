"""What the agent derives from the datastore besides EndpointSlices (model/endpoints.py):
kube-dns as a Service, and the NetworkPolicy view of every pod (a World of netpol's)."""

from __future__ import annotations

from typing import Any

from ..model.netpol import parse_policy
from ..model.objects import ClusterState
from ..model.endpoints import pod_view
from ..model.registry import PodStatus
from ..netpol.evaluate import PodInfo, World
from ..model.services import Endpoint, PodView, Service, ServicePort


def pod_views(state: ClusterState, statuses: dict[str, PodStatus], alive: set[str] | None = None) -> list[PodView]:
    """Every pod that is an endpoint candidate; with `alive` (nodes holding a lease), pods of
    other nodes are not ready."""
    return [v for key, pod in state.pods.items()
            if (v := pod_view(pod, statuses.get(key), alive is None or pod.node_name in alive)) is not None]


def kube_dns(state: ClusterState, nodes: dict[str, dict[str, Any]]) -> tuple[Service, list[Endpoint]]:
    """The `kube-system/kube-dns` Service at .10 of the service range; every node's agent serves it."""
    ip = state.cluster.dns_ip
    ports = (ServicePort("dns", "UDP", 53, 53), ServicePort("dns-tcp", "TCP", 53, 53),
             ServicePort("metrics", "TCP", 9153, 9153))
    # internalTrafficPolicy Local: a pod's queries go to its own node's server (NodeLocal
    # DNSCache's idea), never across the underlay from a pod address.
    svc = Service("kube-system", "kube-dns", "ClusterIP", ip, ports, None, internal_policy_local=True)
    eps = [Endpoint(n["ip"], name, f"node/{name}", ports=(("dns", "UDP", 53), ("dns-tcp", "TCP", 53),
                                                           ("metrics", "TCP", 9153)))
           for name, n in sorted(nodes.items())]
    return svc, eps


def world_of(state: ClusterState, statuses: dict[str, PodStatus], nodes: dict[str, dict[str, Any]]) -> World:
    """Everything NetworkPolicy judges: pods with addresses, namespaces, policies, node addresses.

    Each node's DNS server stands as a pod `kube-system/kube-dns-<node>` labelled
    `k8s-app: kube-dns` at the node's address, so the usual "allow DNS to kube-system"
    egress policies mean what they say.
    """
    pods = [PodInfo(v.namespace, v.name, v.labels, v.ip, v.node, v.ports) for v in pod_views(state, statuses)]
    for name, n in sorted(nodes.items()):
        pods.append(PodInfo("kube-system", f"kube-dns-{name}", {"k8s-app": "kube-dns"}, n["ip"], name,
                            (("dns", "UDP", 53), ("dns-tcp", "TCP", 53))))
    namespaces = {ns: dict(o.labels) for ns, o in state.namespaces.items()}
    namespaces.setdefault("kube-system", {})
    policies = [parse_policy(o.namespace, o.name, o.raw) for o in state.objects.values() if o.kind == "NetworkPolicy"]
    return World(pods, namespaces, policies, {name: n["ip"] for name, n in nodes.items()})
