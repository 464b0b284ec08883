"""A packet tracer over the Services table (kube-proxy's, in Python).

It walks a `kernel.fakenft.Table`: one that `FakeNft` built from the compiler's transactions
(tests), or one `parse_listing` filled from `nft list table`, so that the live kernel can be
traced.

`trace()` walks a new connection through the base chains in hook order and tells what
the kernel does with it: every endpoint the DNAT can choose, a drop or a reject, whether
it leaves masqueraded, and the rules it matched on the way. It knows only the rule
fragments compile.py writes, each by a regex, and raises `UnknownRule` on anything else,
so a new rule shape forces the tracer to learn it. Both branches of a random choice are
followed, so the result lists every possible endpoint.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from ..kernel.fakenft import Refused, Table
from .compile import TABLE


class UnknownRule(Exception):
    """A rule fragment the tracer does not know: the compiler and the tracer are out of step."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise Refused(what)


# `nft list` prints some expressions otherwise than gingham writes them
_LISTED = [(re.compile(p), r) for p, r in (
    (r"meta mark set meta mark \| 0x0*([0-9a-f]+)", r"mark set mark or 0x\1"),
    (r"meta mark set meta mark \^ 0x0*([0-9a-f]+)", r"mark set mark xor 0x\1"),
    (r"meta mark & 0x0*([0-9a-f]+) == 0x0+\b", r"mark and 0x\1 == 0"),
    (r"numgen random mod (\d+) (\d+) ", r"numgen random mod \1 == \2 "),
    (r"(?<!\. )\b(tcp|udp|sctp) dport (\d+(?:-\d+)?) ", r"meta l4proto \1 th dport \2 "),
)]


def parse_listing(text: str, table: str = f"ip {TABLE}") -> Table:
    """A `Table` from `nft list table` output, rules in gingham's own spelling. Elements of
    timed sets (session affinity) keep their key only."""
    t = Table(table)
    block: tuple[str, str] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if pending:
            pending += " " + line
            if not line.endswith("}"):
                continue
            line, pending = pending, ""
        if not line or line.startswith(("table ", "type ", "typeof ", "flags ", "timeout ", "size ", "policy ")):
            continue
        if m := re.match(r"(chain|map|set) (\S+) \{$", line):
            block = (m[1], m[2])
            if m[1] == "chain":
                t.chains[m[2]] = []
            else:
                t.containers[m[2]], t.kinds[m[2]] = {}, m[1]
            continue
        if line == "}":
            block = None
            continue
        if block is None:
            continue
        kind, name = block
        if kind == "chain":
            for pat, rep in _LISTED:
                line = pat.sub(rep, line)
            t.chains[name].append(line)
        elif line.startswith("elements = {"):
            if not line.endswith("}"):
                pending = line
                continue
            body = line[len("elements = {"):-1].strip()
            for item in filter(None, (x.strip() for x in body.split(","))):
                key, _, value = item.partition(" : ")
                key = re.split(r" (?:timeout|expires) ", key)[0]
                t.containers[name][key] = value
    return t


MASQ_MARK = 0x4000


@dataclass
class Trace:
    verdict: str = "ACCEPT"              # ACCEPT, DROP or REJECT
    dnat: list[str] = field(default_factory=list)  # "ip:port" the connection may go to
    masq: bool = False
    matched: list[str] = field(default_factory=list)


class _Return(Exception):
    pass


class _Stop(Exception):
    def __init__(self, verdict: str) -> None:
        self.verdict = verdict


@dataclass
class _Packet:
    src: str
    proto: str
    dst: str
    dport: int
    node_ips: frozenset[str]
    mark: int = 0
    dnatted: bool = False
    outputs: list[str] = field(default_factory=list)
    masquerade: bool = False


def _in(ip: str, spec: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(spec, strict=False)


def _member(ip: str, elements: dict[str, str]) -> bool:
    """Set membership; elements of interval sets (NetworkPolicy's) are networks or a-b ranges."""
    if ip in elements:
        return True
    a = ipaddress.ip_address(ip)
    for e in elements:
        if "/" in e and a in ipaddress.ip_network(e, strict=False):
            return True
        if "-" in e:
            lo, hi = (int(ipaddress.ip_address(x)) for x in e.split("-", 1))
            if lo <= int(a) <= hi:
                return True
    return False


class _Tracer:
    def __init__(self, table: Table, trace: Trace) -> None:
        self.t, self.trace = table, trace
        self.where: list[str] = []   # the chain being run, innermost last
        self.notes: list[str] = []   # what the rule being run looked up
        self.noted: list[bool] = []  # per rule being run, innermost last: recorded already

    def chain(self, name: str, p: _Packet) -> None:
        """Runs a chain; returns when it falls through or returns, raises _Stop on a verdict."""
        self.where.append(name)
        try:
            for rule in self.t.chains[name]:
                self.rule(rule, p)
        except _Return:
            pass
        finally:
            self.where.pop()

    def note(self, rule: str) -> None:
        """Records a rule that matched (or jumped), once, with what its lookups found."""
        if self.noted[-1]:
            return
        found = f"  [{'; '.join(self.notes)}]" if self.notes else ""
        self.trace.matched.append(f"{self.where[-1]}: {rule}{found}")
        self.notes, self.noted[-1] = [], True

    def rule(self, rule: str, p: _Packet) -> None:
        rest = rule.strip() + " "
        self.notes = []
        self.noted.append(False)
        try:
            while rest.strip():
                matched, rest = self.fragment(rest, p, rule)
                if not matched:
                    return
            self.note(rule)
        except _Stop:
            self.note(rule)
            raise
        finally:
            self.noted.pop()

    def vmap(self, name: str, key: str) -> tuple[bool, str]:
        """A verdict map lookup: the verdict found replaces the rest of the rule."""
        verdict = self.t.containers[name].get(key)
        if not verdict:
            return False, ""
        self.notes.append(f"{key} : {verdict}")
        return True, verdict + " "

    def fragment(self, r: str, p: _Packet, rule: str) -> tuple[bool, str]:  # noqa: C901 (one case per fragment)
        def m(pattern: str) -> re.Match[str] | None:
            return re.match(pattern + r"\s+", r)

        def addr(which: str) -> str:
            return p.src if which == "saddr" else p.dst
        if x := m(r"ct state new"):
            return True, r[x.end():]
        if x := m(r"ct state established,related"):
            return False, ""  # a new connection is neither
        if x := m(r"th dport (\d+)(?:-(\d+))?"):
            return int(x[1]) <= p.dport <= int(x[2] or x[1]), r[x.end():]
        if x := m(r"ct status dnat"):
            return p.dnatted, r[x.end():]
        if x := m(r"ip (saddr|daddr) \. ip (saddr|daddr) @(\S+)"):
            return f"{addr(x[1])} . {addr(x[2])}" in self.t.containers[x[3]], r[x.end():]
        if x := m(r"ip daddr \. meta l4proto \. th dport vmap @(\S+)"):
            return self.vmap(x[1], f"{p.dst} . {p.proto} . {p.dport}")
        if x := m(r"meta l4proto \. th dport vmap @(\S+)"):
            return self.vmap(x[1], f"{p.proto} . {p.dport}")
        if x := m(r"ip (saddr|daddr) vmap @(\S+)"):
            return self.vmap(x[2], addr(x[1]))
        if x := m(r"ip (saddr|daddr) (!= )?@(\S+)"):
            return _member(addr(x[1]), self.t.containers[x[3]]) != bool(x[2]), r[x.end():]
        if x := m(r"ip (saddr|daddr) (!= )?\{ ([^}]*) \}"):
            hit = any(_in(addr(x[1]), s.strip()) for s in x[3].split(","))
            return hit != bool(x[2]), r[x.end():]
        if x := m(r"ip (saddr|daddr) (!= )?([0-9./]+)"):
            return _in(addr(x[1]), x[3]) != bool(x[2]), r[x.end():]
        if x := m(r"fib saddr type local"):
            return p.src in p.node_ips, r[x.end():]
        if x := m(r"meta l4proto (tcp|udp|sctp)"):
            return p.proto == x[1], r[x.end():]
        if x := m(r"mark and (0x[0-9a-f]+) == 0"):
            return not p.mark & int(x[1], 16), r[x.end():]
        if x := m(r"mark set mark or (0x[0-9a-f]+)"):
            p.mark |= int(x[1], 16)
            return True, r[x.end():]
        if x := m(r"mark set mark xor (0x[0-9a-f]+)"):
            p.mark ^= int(x[1], 16)
            return True, r[x.end():]
        if x := m(r"update @\S+ \{ ip saddr \}"):
            return True, r[x.end():]  # a new client: the affinity set learns it, nothing to trace
        if x := m(r"numgen random mod (\d+) == 0"):
            # either branch may be taken: follow the rest of this rule, then go on as if it missed
            self.branch(r[x.end():], p, rule)
            return False, ""
        if x := m(r"dnat ip to ip daddr \. (tcp|udp|sctp) dport \. numgen random mod (\d+) map @(\S+)"):
            if p.proto != x[1]:
                return False, ""
            elems = self.t.containers[x[3]]
            for slot in range(int(x[2])):
                target = elems.get(f"{p.dst} . {p.dport} . {slot}")
                _check(target is not None, f"{rule}: no endpoint in slot {slot} for {p.dst}:{p.dport}")
                p.outputs.append(str(target).replace(" . ", ":"))
            raise _Stop("DNAT")
        if x := m(r"dnat to (\S+)"):
            p.outputs.append(x[1])
            raise _Stop("DNAT")
        if x := m(r"masquerade( fully-random)?"):
            p.masquerade = True
            raise _Stop("ACCEPT")
        if x := m(r"(jump|goto) (\S+)"):
            self.note(rule)
            self.chain(x[2], p)
            if x[1] == "goto":
                raise _Return()
            return True, r[x.end():]
        if x := m(r"return"):
            self.note(rule)
            raise _Return()
        if x := m(r'log prefix "[^"]*" group \d+'):
            return True, r[x.end():]  # a copy to the flow recorder (agent/flows.py); the packet goes on
        if x := m(r"(drop|reject|accept)"):
            raise _Stop(x[1].upper())
        raise UnknownRule(f"unmatched rule: {rule!r} at {r!r}")

    def branch(self, rest: str, p: _Packet, rule: str) -> None:
        try:
            while rest.strip():
                ok, rest = self.fragment(rest, p, rule)
                if not ok:
                    return
        except _Stop as s:
            if s.verdict != "DNAT":
                raise
        except _Return:
            pass


def trace(table: Table, src: str, proto: str, dst: str, dport: int, node_ips: set[str],
          local_origin: bool = False) -> Trace:
    """A new connection from `src` (the node itself when `local_origin`) to `dst:dport`."""
    out = Trace()
    tr = _Tracer(table, out)
    p = _Packet(src, proto, dst, dport, frozenset(node_ips))
    hooks = (["filter-output-pre-dnat", "nat-output"] if local_origin
             else ["filter-prerouting-pre-dnat", "nat-prerouting"])
    try:
        for h in hooks:
            try:
                tr.chain(h, p)
            except _Stop as s:
                if s.verdict != "DNAT":
                    raise
                break
        if p.outputs:
            out.dnat = sorted(set(p.outputs))
            p.dnatted = True
            p.dst, port = p.outputs[0].rsplit(":", 1)
            p.dport = int(port)
        to_node = p.dst in node_ips
        # after DNAT: sent from here, a packet meets output and postrouting (and input too when it
        # is for this node, over loopback); from outside, input or forward and postrouting
        after = (["filter-output", "nat-postrouting"] + (["filter-input"] if to_node else []) if local_origin
                 else ["filter-input"] if to_node else ["filter-forward", "nat-postrouting"])
        for h in after:
            try:
                tr.chain(h, p)
            except _Stop as s:  # an accept ends this hook only
                if s.verdict in ("DROP", "REJECT"):
                    raise
    except _Stop as s:
        if s.verdict in ("DROP", "REJECT"):
            out.verdict = s.verdict
    out.masq = p.masquerade
    return out


def filter_verdict(table: Table, chain: str, src: str, proto: str, dst: str, dport: int) -> Trace:
    """One filter chain (NetworkPolicy's `forward` or `input`) for a new connection: ACCEPT
    when it falls through or accepts, DROP or REJECT when it stops the packet."""
    out = Trace()
    try:
        _Tracer(table, out).chain(chain, _Packet(src, proto, dst, dport, frozenset()))
    except _Stop as s:
        out.verdict = "ACCEPT" if s.verdict == "DNAT" else s.verdict
    return out
