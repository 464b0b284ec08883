"""Pure: policies + pods + this node -> the `inet gingham-netpol` table.

Judged in the forward hook (after Service DNAT, so a Service address is already a pod's)
and in the input hook for pods talking to their own node. A verdict map per direction
sends a packet of an isolated local pod to that pod's chain; each rule of each selecting
policy is one line matching an address set (pods resolved, ipBlocks minus their excepts)
and a constant port range, so a packet's cost grows with the rules that select its pod,
not with the number of policies or pods. Replies of allowed connections pass first.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress

from ..model.netpol import Peer, Rule
from ..services.ruleset import BaseChain, Ruleset
from .evaluate import PodInfo, World, peer_matches, resolve_port, selecting

TABLE = "gingham-netpol"
PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


def _h(s: str) -> str:
    return base64.b32encode(hashlib.sha256(s.encode()).digest())[:10].decode().lower()


def _addresses(world: World, peers: tuple[Peer, ...] | None, policy_ns: str, wanted: list[PodInfo]) -> list[str]:
    """The peers as collapsed networks: ipBlocks minus excepts, plus the selected pods' /32s."""
    nets: list[ipaddress.IPv4Network] = []
    for peer in peers or ():
        if peer.cidr:
            base = [ipaddress.IPv4Network(peer.cidr)] if ipaddress.ip_network(peer.cidr).version == 4 else []
            for ex in peer.excepts:
                exn = ipaddress.IPv4Network(ex)
                base = [piece for b in base for piece in (b.address_exclude(exn) if exn.subnet_of(b) else [b])]
            nets += base
        else:
            pool = world.pods_in(policy_ns) if peer.ns_selector is None and wanted is world.pods else wanted
            nets += [ipaddress.IPv4Network(f"{p.ip}/32") for p in pool if peer_matches(world, peer, policy_ns, p.ip, p)]
    return [str(n) for n in ipaddress.collapse_addresses(nets)]


class _Memo:
    """Per compile: equal peers are resolved once (not once per rule and per pod they select), and
    equal address lists share one set, so the table grows with distinct peers, not with rules × pods."""

    def __init__(self) -> None:
        self.addrs: dict[tuple[str, str], list[str] | None] = {}
        self.sets: dict[tuple[str, ...], str] = {}

    def set_for(self, rs: Ruleset, addrs: list[str]) -> str:
        key = tuple(addrs)
        if key not in self.sets:
            name = f"p-{_h(','.join(key))}"
            rs.sets[name] = "type ipv4_addr; flags interval"
            for a in addrs:
                rs.element(name, a)
            self.sets[key] = name
        return self.sets[key]


def _rule_lines(rs: Ruleset, world: World, chain: str, rule: Rule, policy_ns: str, ingress: bool,
                pod: PodInfo, memo: _Memo) -> None:
    """Lines that `return` (allowed in this direction) for one rule of a policy selecting `pod`."""
    field = "saddr" if ingress else "daddr"
    # (destination pods a named port narrows to, port spec); an egress named port resolves on
    # each destination pod, so destinations are grouped by what it resolves to
    groups: list[tuple[list[PodInfo] | None, tuple[str, tuple[int, int]] | None]] = []
    for port in rule.ports or (None,):
        if port is None:
            groups.append((None, None))
        elif ingress or not isinstance(port.port, str):
            rng = resolve_port(port, pod if ingress else None)
            if rng is not None:
                groups.append((None, (port.protocol, rng)))
        else:
            by_port: dict[tuple[int, int], list[PodInfo]] = {}
            for p in world.pods:
                if (rng := resolve_port(port, p)) is not None:
                    by_port.setdefault(rng, []).append(p)
            groups += [(pods, (port.protocol, rng)) for rng, pods in sorted(by_port.items())]
    for candidates, spec in groups:
        if candidates is not None:
            addrs: list[str] | None = [str(n) for n in ipaddress.collapse_addresses(
                ipaddress.IPv4Network(f"{p.ip}/32") for p in candidates
                if rule.peers is None or any(peer_matches(world, pr, policy_ns, p.ip, p) for pr in rule.peers))]
        elif rule.peers is not None:
            key = (policy_ns, repr(rule.peers))  # equal peers in any policy of a namespace resolve alike
            if key not in memo.addrs:
                memo.addrs[key] = _addresses(world, rule.peers, policy_ns, world.pods)
            addrs = memo.addrs[key]
        else:
            addrs = None
        match = ""
        if addrs is not None:
            if not addrs:
                continue  # no address can match: the rule allows nothing here
            match = f"ip {field} @{memo.set_for(rs, addrs)} "
        if spec is not None:
            proto, (lo, hi) = spec
            match += f"meta l4proto {PROTO[proto]} th dport {lo if lo == hi else f'{lo}-{hi}'} "
        rs.chains[chain].append(match + "return")


def compile_netpol(world: World, node: str) -> Ruleset:
    rs = Ruleset("inet", TABLE, [BaseChain("forward", "filter", "forward", 0), BaseChain("input", "filter", "input", 0)])
    rs.maps["ingress-pods"] = "type ipv4_addr : verdict"
    rs.maps["egress-pods"] = "type ipv4_addr : verdict"
    rs.chains["forward"] = ["ct state established,related accept", "ip saddr vmap @egress-pods",
                            "ip daddr vmap @ingress-pods"]
    rs.chains["input"] = ["ct state established,related accept", "ip saddr vmap @egress-pods"]
    memo = _Memo()
    local = [p for p in world.pods if p.node == node and p.ip not in world.node_ips.values()]
    for pod in sorted(local, key=lambda p: p.key):
        for ingress in (True, False):
            pols = selecting(world, pod, ingress)
            if not pols:
                continue
            chain = f"{'ingress' if ingress else 'egress'}-{_h(pod.key)}-{pod.key}"
            rs.chains[chain] = []
            for p in pols:
                for r in (p.ingress if ingress else p.egress):
                    _rule_lines(rs, world, chain, r, p.namespace, ingress, pod, memo)
            if ingress and pod.node in world.node_ips:
                rs.chains[chain].insert(0, f"ip saddr {world.node_ips[pod.node]} return")  # its own node
            rs.chains[chain].append("drop")
            rs.element("ingress-pods" if ingress else "egress-pods", pod.ip, f"jump {chain}")
    return rs
