"""A ruleset as a value (chains, maps, sets), rendered whole or as the diff between two.

The compiler builds a `Ruleset`; the applier writes `full(new)` once and `diff(old, new)`
after that, so a change to one Service rewrites that Service's chains and map elements
only, and dynamic sets (session affinity) keep their contents.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BaseChain:
    name: str
    type: str
    hook: str
    priority: int


@dataclass
class Ruleset:
    family: str
    table: str
    base: list[BaseChain] = field(default_factory=list)
    chains: dict[str, list[str]] = field(default_factory=dict)  # name -> rules (base chains too)
    maps: dict[str, str] = field(default_factory=dict)           # name -> type spec
    sets: dict[str, str] = field(default_factory=dict)           # name -> type spec (+ flags)
    elements: dict[str, dict[str, str]] = field(default_factory=dict)  # map/set -> key -> value ("" for sets)

    def element(self, container: str, key: str, value: str = "") -> None:
        self.elements.setdefault(container, {})[key] = value

    @property
    def t(self) -> str:
        return f"{self.family} {self.table}"


def merge(into: Ruleset, frag: Ruleset) -> None:
    """A fragment's chains, sets and elements into a whole table."""
    into.chains.update(frag.chains)
    into.sets.update(frag.sets)
    for c, elems in frag.elements.items():
        into.elements.setdefault(c, {}).update(elems)


def _chain_decl(rs: Ruleset, name: str) -> str:
    for b in rs.base:
        if b.name == name:
            return (f"add chain {rs.t} {name} {{ type {b.type} hook {b.hook} priority {b.priority}; "
                    "policy accept; }")
    return f"add chain {rs.t} {name}"


def _elem(rs: Ruleset, container: str, key: str, value: str) -> str:
    return f"{rs.t} {container} {{ {key} : {value} }}" if value else f"{rs.t} {container} {{ {key} }}"


def full(rs: Ruleset) -> str:
    """The whole table, replacing whatever was there, as one transaction."""
    out = [f"add table {rs.t}", f"delete table {rs.t}", f"add table {rs.t}"]
    out += [f"add map {rs.t} {n} {{ {spec}; }}" for n, spec in rs.maps.items()]
    out += [f"add set {rs.t} {n} {{ {spec}; }}" for n, spec in rs.sets.items()]
    out += [_chain_decl(rs, n) for n in rs.chains]
    for n, rules in rs.chains.items():
        out += [f"add rule {rs.t} {n} {r}" for r in rules]
    for c, elems in rs.elements.items():
        items = [f"{k} : {v}" if v else k for k, v in elems.items()]
        # many elements to a statement: nft parses and checks one statement per element
        # several times slower than the same elements listed together
        out += [f"add element {rs.t} {c} {{ {', '.join(items[i:i + 1000])} }}" for i in range(0, len(items), 1000)]
    return "\n".join(out) + "\n"


def diff(old: Ruleset, new: Ruleset) -> str:
    """What turns `old` into `new`: changed chains are flushed and refilled, removed ones deleted
    after the elements that point at them, and only changed elements are touched."""
    out: list[str] = []
    containers = (("map", old.maps, new.maps), ("set", old.sets, new.sets))
    for kind, was, now in containers:  # a container whose type changed is made anew
        for n, spec in now.items():
            if was.get(n) != spec:
                if n in was:
                    out.append(f"delete {kind} {new.t} {n}")
                out.append(f"add {kind} {new.t} {n} {{ {spec}; }}")
    for n in new.chains:
        if n not in old.chains:
            out.append(_chain_decl(new, n))
    for n, rules in new.chains.items():
        if old.chains.get(n) != rules:
            if n in old.chains:
                out.append(f"flush chain {new.t} {n}")
            out += [f"add rule {new.t} {n} {r}" for r in rules]
    recreated = {n for n in new.maps if old.maps.get(n) != new.maps[n]} | \
                {n for n in new.sets if old.sets.get(n) != new.sets[n]}
    # containers deleted below take their elements with them; a fragment names no containers
    # of its own, so its elements are always deleted one by one
    gone = (set(old.maps) | set(old.sets)) - (set(new.maps) | set(new.sets))
    for c in set(old.elements) | set(new.elements):
        o = {} if c in recreated else old.elements.get(c, {})
        nw = new.elements.get(c, {})
        for k, v in o.items():
            if (k not in nw or nw[k] != v) and c not in gone:
                out.append(f"delete element {_elem(old, c, k, '')}")
        for k, v in nw.items():
            if o.get(k) != v:
                out.append(f"add element {_elem(new, c, k, v)}")
    for n in old.chains:
        if n not in new.chains:
            out.append(f"flush chain {new.t} {n}")
    for n in old.chains:
        if n not in new.chains:
            out.append(f"delete chain {new.t} {n}")
    for kind, was, now in containers:
        out += [f"delete {kind} {new.t} {n}" for n in was if n not in now]
    return "\n".join(out) + ("\n" if out else "")
