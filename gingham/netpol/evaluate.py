"""Pure: would the API's NetworkPolicy semantics let this connection through, and why.

A pod is isolated for a direction only when some policy of its namespace selects it for
that direction; then a connection is allowed when any rule of those policies matches it
(the union). Egress is judged at the source pod, ingress at the destination pod, both
must allow. Named ports resolve on the destination pod, per protocol; ipBlocks match pod
addresses too; traffic from a pod's own node is always allowed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..model.labels import matches
from ..model.netpol import NetworkPolicy, Peer, Port, Rule


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    labels: dict[str, str]
    ip: str
    node: str = ""
    ports: tuple[tuple[str, str, int], ...] = ()  # (name, protocol, port)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class World:
    pods: list[PodInfo]
    namespaces: dict[str, dict[str, str]]
    policies: list[NetworkPolicy]
    node_ips: dict[str, str] = field(default_factory=dict)  # node -> its address
    _ix: tuple[dict[str, PodInfo], dict[str, list[NetworkPolicy]], dict[str, list[PodInfo]]] | None = field(
        default=None, repr=False, compare=False)

    def ns_labels(self, ns: str) -> dict[str, str]:
        # every namespace carries its name as a label, as the API server adds it
        return {**self.namespaces.get(ns, {}), "kubernetes.io/metadata.name": ns}

    def pod_at(self, ip: str) -> PodInfo | None:
        return self._index()[0].get(ip)

    def policies_in(self, ns: str) -> list[NetworkPolicy]:
        return self._index()[1].get(ns, [])

    def pods_in(self, ns: str) -> list[PodInfo]:
        return self._index()[2].get(ns, [])

    def _index(self) -> tuple[dict[str, PodInfo], dict[str, list[NetworkPolicy]], dict[str, list[PodInfo]]]:
        """Lookups by address and by namespace, built once (a World is not changed after it is made)."""
        if self._ix is None:
            by_ns: dict[str, list[NetworkPolicy]] = {}
            for p in self.policies:
                by_ns.setdefault(p.namespace, []).append(p)
            pods_ns: dict[str, list[PodInfo]] = {}
            for q in self.pods:
                pods_ns.setdefault(q.namespace, []).append(q)
            self._ix = ({q.ip: q for q in reversed(self.pods)}, by_ns, pods_ns)
        return self._ix


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    egress: Decision
    ingress: Decision


def peer_matches(world: World, peer: Peer, policy_ns: str, ip: str, pod: PodInfo | None) -> bool:
    if peer.cidr:
        addr = ipaddress.ip_address(ip)
        return addr in ipaddress.ip_network(peer.cidr) and not any(addr in ipaddress.ip_network(e)
                                                                    for e in peer.excepts)
    if pod is None:
        return False
    if peer.ns_selector is None:
        return pod.namespace == policy_ns and matches(peer.pod_selector, pod.labels)
    return matches(peer.ns_selector, world.ns_labels(pod.namespace)) and \
        (peer.pod_selector is None or matches(peer.pod_selector, pod.labels))


def resolve_port(port: Port, dst: PodInfo | None) -> tuple[int, int] | None:
    """The port range a Port entry means for this destination; None when a name does not resolve."""
    if port.port is None:
        return (1, 65535)
    if isinstance(port.port, int):
        return (port.port, port.end_port or port.port)
    for name, proto, num in (dst.ports if dst else ()):
        if name == port.port and proto == port.protocol:
            return (num, num)
    return None


def port_matches(port: Port, protocol: str, dport: int, dst: PodInfo | None) -> bool:
    if port.protocol != protocol:
        return False
    rng = resolve_port(port, dst)
    return rng is not None and rng[0] <= dport <= rng[1]


def rule_matches(world: World, rule: Rule, policy_ns: str, peer_ip: str, peer_pod: PodInfo | None,
                 protocol: str, dport: int, dst: PodInfo | None) -> bool:
    if rule.peers is not None and not any(peer_matches(world, p, policy_ns, peer_ip, peer_pod) for p in rule.peers):
        return False
    return rule.ports is None or any(port_matches(p, protocol, dport, dst) for p in rule.ports)


def selecting(world: World, pod: PodInfo, ingress: bool) -> list[NetworkPolicy]:
    return [p for p in world.policies_in(pod.namespace) if matches(p.pod_selector, pod.labels)
            and (p.ingress_isolates if ingress else p.egress_isolates)]


def judge(world: World, pod: PodInfo, peer_ip: str, peer_pod: PodInfo | None, protocol: str, dport: int,
          dst: PodInfo | None, ingress: bool) -> Decision:
    direction = "ingress" if ingress else "egress"
    pols = selecting(world, pod, ingress)
    if not pols:
        return Decision(True, f"{pod.key} is not isolated for {direction} (no policy selects it)")
    for p in pols:
        for i, r in enumerate(p.ingress if ingress else p.egress):
            if rule_matches(world, r, p.namespace, peer_ip, peer_pod, protocol, dport, dst):
                return Decision(True, f"allowed by {p.key} {direction}[{i}]")
    names = ", ".join(p.key for p in pols)
    return Decision(False, f"{pod.key} is isolated for {direction} by {names} and no rule matches")


def evaluate(world: World, src_ip: str, dst_ip: str, dport: int, protocol: str = "TCP") -> Verdict:
    src, dst = world.pod_at(src_ip), world.pod_at(dst_ip)
    if src_ip == dst_ip:  # the kernel delivers it inside the pod's own namespace; no hook sees it
        d = Decision(True, "a pod reaching its own address never leaves its namespace")
        return Verdict(True, d, d)
    egress = judge(world, src, dst_ip, dst, protocol, dport, dst, False) if src else \
        Decision(True, f"{src_ip} is not a pod: no egress policy applies")
    if dst is None:
        ingress = Decision(True, f"{dst_ip} is not a pod: no ingress policy applies")
    elif dst.node and world.node_ips.get(dst.node) == src_ip:
        ingress = Decision(True, f"from {dst.key}'s own node: always allowed")
    else:
        ingress = judge(world, dst, src_ip, src, protocol, dport, dst, True)
    return Verdict(egress.allowed and ingress.allowed, egress, ingress)


def matrix(world: World, port: int, protocol: str = "TCP") -> dict[str, dict[str, bool]]:
    pods = [p for p in world.pods if p.namespace != "kube-system"]
    return {a.key: {b.key: evaluate(world, a.ip, b.ip, port, protocol).allowed for b in pods} for a in pods}
