"""The NetworkPolicy view of a cluster: what policies are judged against (pure).

Pods with addresses, namespaces and their labels, the policies (parsed once, where the
datastore's objects are read), and the nodes' addresses. Each node's DNS server stands as a
pod `kube-system/kube-dns-<node>` labelled `k8s-app: kube-dns` at the node's address, so the
usual "allow DNS to kube-system" egress policies mean what they say.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..model.endpoints import pod_view
from ..model.netpol import NetworkPolicy
from ..model.objects import ClusterState
from ..model.registry import PodStatus
from .evaluate import PodInfo, World


def world_of(state: ClusterState, statuses: dict[str, PodStatus], nodes: dict[str, dict[str, Any]],
             policies: Iterable[NetworkPolicy]) -> World:
    # a hostNetwork pod is its node as far as policy goes: never selected, its traffic the node's
    pods = [PodInfo(v.namespace, v.name, v.labels, v.ip, v.node, v.ports) for key, pod in state.pods.items()
            if not pod.host_network and (v := pod_view(pod, statuses.get(key))) is not None]
    for name, n in sorted(nodes.items()):
        pods.append(PodInfo("kube-system", f"kube-dns-{name}", {"k8s-app": "kube-dns"}, n["ip"], name,
                            (("dns", "UDP", 53), ("dns-tcp", "TCP", 53))))
    namespaces = {ns: dict(o.labels) for ns, o in state.namespaces.items()}
    namespaces.setdefault("kube-system", {})
    return World(pods, namespaces, sorted(policies, key=lambda p: (p.namespace, p.name)),
                 {name: n["ip"] for name, n in nodes.items()})
