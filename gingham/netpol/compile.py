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

from dataclasses import dataclass

from ..model.labels import matches
from ..model.netpol import Peer, Rule
from ..kernel.nftables import BaseChain, Ruleset, merge
from .evaluate import PodInfo, World, peer_matches, resolve_port, selecting

TABLE = "gingham-netpol"
DENY_PREFIX, DENY_LOG_GROUP = "gingham-np", 100  # the log prefix names the direction and the pod (by hash)
PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


def _h(s: str) -> str:
    return base64.b32encode(hashlib.sha256(s.encode()).digest())[:10].decode().lower()


def deny_id(pod_key: str) -> str:
    """How a pod is named in its deny log prefix (a hash: a log prefix holds 127 bytes at most)."""
    return _h(pod_key)


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


PeerKey = tuple[str, str]  # (policy namespace, repr of a rule's peers): equal peers resolve alike


def peer_set_name(key: PeerKey) -> str:
    return f"peers-{_h(key[0] + '/' + key[1])}"


class _Memo:
    """Equal peers are resolved once (not once per rule and per pod they select) into one set
    named for them, so the table grows with distinct peers, not with rules × pods, and a pod
    joining or leaving a peer changes that set's elements, not the chains that use it.
    (Egress named ports, resolved per destination pod, get sets named for their addresses.)
    Kept across compiles by NetpolCompiler, which resolves again the peers a change may affect."""

    def __init__(self) -> None:
        self.addrs: dict[PeerKey, list[str] | None] = {}
        self.peers: dict[PeerKey, tuple[str, tuple[Peer, ...]]] = {}
        self.uses: set[PeerKey] = set()  # what the pod being compiled resolved
        self.named = False               # ...and whether an egress named port read every pod

    def set_for(self, rs: Ruleset, addrs: list[str]) -> str:
        name = f"p-{_h(','.join(addrs))}"
        if name not in rs.sets:
            rs.sets[name] = "type ipv4_addr; flags interval"
            for a in addrs:
                rs.element(name, a)
        return name


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
            memo.named = True
            by_port: dict[tuple[int, int], list[PodInfo]] = {}
            for p in world.pods:
                if (rng := resolve_port(port, p)) is not None:
                    by_port.setdefault(rng, []).append(p)
            groups += [(pods, (port.protocol, rng)) for rng, pods in sorted(by_port.items())]
    for candidates, spec in groups:
        peer_set: str | None = None
        if candidates is not None:
            addrs: list[str] | None = [str(n) for n in ipaddress.collapse_addresses(
                ipaddress.IPv4Network(f"{p.ip}/32") for p in candidates
                if rule.peers is None or any(peer_matches(world, pr, policy_ns, p.ip, p) for pr in rule.peers))]
        elif rule.peers is not None:
            key = (policy_ns, repr(rule.peers))  # equal peers in any policy of a namespace resolve alike
            if key not in memo.addrs:
                memo.addrs[key] = _addresses(world, rule.peers, policy_ns, world.pods)
                memo.peers[key] = (policy_ns, rule.peers)
            memo.uses.add(key)
            addrs = None
            peer_set = peer_set_name(key)  # named for the peers, not their addresses: a change is elements only
        else:
            addrs = None
        match = ""
        if peer_set is not None:
            match = f"ip {field} @{peer_set} "
        elif addrs is not None:
            if not addrs:
                continue  # no address can match: the rule allows nothing here
            match = f"ip {field} @{memo.set_for(rs, addrs)} "
        if spec is not None:
            proto, (lo, hi) = spec
            match += f"meta l4proto {PROTO[proto]} th dport {lo if lo == hi else f'{lo}-{hi}'} "
        rs.chains[chain].append(match + "return")


def _base() -> Ruleset:
    rs = Ruleset("inet", TABLE, [BaseChain("forward", "filter", "forward", 0), BaseChain("input", "filter", "input", 0)])
    rs.maps["ingress-pods"] = "type ipv4_addr : verdict"
    rs.maps["egress-pods"] = "type ipv4_addr : verdict"
    rs.chains["forward"] = ["ct state established,related accept", "ip saddr vmap @egress-pods",
                            "ip daddr vmap @ingress-pods"]
    rs.chains["input"] = ["ct state established,related accept", "ip saddr vmap @egress-pods"]
    return rs


@dataclass
class _Fragment:
    rules: Ruleset          # the pod's chains, its named-port sets, its verdict-map elements
    uses: set[PeerKey]      # the peers its rules match (their sets are the compiler's)
    named: bool             # an egress named port: it read every pod's ports


def _pod_fragment(world: World, pod: PodInfo, memo: _Memo) -> _Fragment:
    frag = Ruleset("inet", TABLE)
    memo.uses, memo.named = set(), False
    for ingress in (True, False):
        pols = selecting(world, pod, ingress)
        if not pols:
            continue
        chain = f"{'ingress' if ingress else 'egress'}-{_h(pod.key)}-{pod.key}"
        frag.chains[chain] = []
        for p in pols:
            for r in (p.ingress if ingress else p.egress):
                _rule_lines(frag, world, chain, r, p.namespace, ingress, pod, memo)
        if ingress and pod.node in world.node_ips:
            frag.chains[chain].insert(0, f"ip saddr {world.node_ips[pod.node]} return")  # its own node
        # what no rule allowed is dropped, and a copy goes to the node's flow recorder (agent/flows.py)
        frag.chains[chain].append(f'log prefix "{DENY_PREFIX} {"I" if ingress else "E"} {deny_id(pod.key)}" '
                                  f"group {DENY_LOG_GROUP} drop")
        frag.element("ingress-pods" if ingress else "egress-pods", pod.ip, f"jump {chain}")
    return _Fragment(frag, memo.uses, memo.named)


class NetpolCompiler:
    """compile_netpol, kept by changes: each local pod's chains are compiled again only when
    something they depend on changed (the pod, a policy selecting it before or after, a pod or
    namespace that a peer it resolved may match, or any pod when an egress named port read them
    all); the node's addresses changing compiles everything. Equal to a fresh compile (a
    property test checks it); a label change at 1,000 pods x 1,000 policies costs its pods."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.world: World | None = None
        self.memo = _Memo()
        self.frags: dict[str, _Fragment] = {}

    def compile(self, world: World) -> Ruleset:
        local = {p.key: p for p in world.pods if p.node == self.node and p.ip not in world.node_ips.values()}
        old = self.world
        if old is None or old.node_ips != world.node_ips:
            self.memo, self.frags = _Memo(), {}
            dirty = set(local)
        else:
            dirty = self._dirty(old, world, local)
        for key in dirty | (self.frags.keys() - local.keys()):
            if key in local:
                self.frags[key] = _pod_fragment(world, local[key], self.memo)
            else:
                self.frags.pop(key, None)
        self.world = world
        rs = _base()
        used: set[PeerKey] = set()
        for key in sorted(self.frags):
            merge(rs, self.frags[key].rules)
            used |= self.frags[key].uses
        for pk in [k for k in self.memo.addrs if k not in used]:  # peers no pod uses any more
            del self.memo.addrs[pk], self.memo.peers[pk]
        for pk in sorted(used):
            name = peer_set_name(pk)
            rs.sets[name] = "type ipv4_addr; flags interval"
            for a in self.memo.addrs[pk] or []:
                rs.element(name, a)
            rs.elements.setdefault(name, {})
        return rs

    def _dirty(self, old: World, new: World, local: dict[str, PodInfo]) -> set[str]:
        before, after = {p.key: p for p in old.pods}, {p.key: p for p in new.pods}
        pods = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        spaces = {n for n in old.namespaces.keys() | new.namespaces.keys()
                  if old.namespaces.get(n) != new.namespaces.get(n)}
        was = {(p.namespace, p.name): p for p in old.policies}
        now = {(p.namespace, p.name): p for p in new.policies}
        policies = [p for k in was.keys() | now.keys() if was.get(k) != now.get(k)
                    for p in (was.get(k), now.get(k)) if p is not None]
        stale: set[PeerKey] = set()
        for key, (ns, peers) in self.memo.peers.items():
            by_pods = [pr for pr in peers if not pr.cidr]
            if spaces and any(pr.ns_selector is not None for pr in by_pods) or any(
                    q is not None and peer_matches(w, pr, ns, q.ip, q)
                    for k in pods for w, q in ((old, before.get(k)), (new, after.get(k))) for pr in by_pods):
                stale.add(key)
        for key in stale:  # resolved again now: their sets' elements change, the chains using them do not
            ns, peers = self.memo.peers[key]
            self.memo.addrs[key] = _addresses(new, peers, ns, new.pods)
        dirty = {k for k in pods if k in local or k in self.frags}
        for pod in [*local.values(), *(before[k] for k in self.frags if k in before)]:
            if any(pol.namespace == pod.namespace and matches(pol.pod_selector, pod.labels) for pol in policies):
                dirty.add(pod.key)
        dirty |= {k for k, f in self.frags.items() if f.named and (pods or spaces)}  # named ports read every pod
        return dirty


def compile_netpol(world: World, node: str) -> Ruleset:
    """The node's whole table from scratch."""
    return NetpolCompiler(node).compile(world)
