"""nftables objects as values, and the one transaction type that writes them.

Every writer of nft rules in gingham (the Services and NetworkPolicy compilers, the node's
masquerade, the bridge and portmap plugins) builds a `Transaction`, in the shape of
knftables' (the Kubernetes project's Go library): verbs on a table's chains, rules, maps,
sets and elements, in order. `str(tx)` is the `nft -f` script, applied whole or not at all
by `kernel.nft.run` (or by `kernel.fakenft.FakeNft` in tests).

A `Ruleset` is a table's desired state as a value. `full(rs)` is the transaction that
replaces the table with it; `diff(old, new)` the one that turns one state into the other,
touching only what changed (so dynamic sets such as session affinity keep their contents).

This module is on the CNI plugins' path: no dataclasses or typing at run time.
"""

from __future__ import annotations

from ..records import factory, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable

# nft parses and checks one element statement several times slower than the same elements
# listed together, so elements go in statements of up to this many
ELEMENTS_PER_STATEMENT = 1000


def quote(s: str) -> str:
    """An nft string literal (comments, interface names)."""
    return '"' + s.replace('"', "'") + '"'


def element(key: str, value: str = "", comment: str = "") -> str:
    """One element as nft writes it: `key [comment "..."] [: value]`."""
    if comment:
        key = f"{key} comment {quote(comment)}"
    return f"{key} : {value}" if value else key


@record(frozen=True)
class BaseChain:
    """A chain attached to a netfilter hook."""
    name: str
    type: str
    hook: str
    priority: int | str
    policy: str = "accept"

    def spec(self) -> str:
        return f"{{ type {self.type} hook {self.hook} priority {self.priority}; policy {self.policy}; }}"


class Transaction:
    """An ordered list of nft commands on one table; `str()` is the script."""

    def __init__(self, family: str, table: str) -> None:
        self.family, self.table = family, table
        self.t = f"{family} {table}"
        self.lines: list[str] = []

    def __str__(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    def __bool__(self) -> bool:
        return bool(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def extend(self, other: Transaction) -> Transaction:
        """Appends another transaction's commands (on the same table)."""
        if other.t != self.t:
            raise ValueError(f"cannot join a transaction on {other.t} to one on {self.t}")
        self.lines += other.lines
        return self

    # tables
    def add_table(self) -> Transaction:
        self.lines.append(f"add table {self.t}")
        return self

    def delete_table(self) -> Transaction:
        self.lines.append(f"delete table {self.t}")
        return self

    def replace_table(self) -> Transaction:
        """An empty table whether or not one was there (adding first makes the delete safe)."""
        return self.add_table().delete_table().add_table()

    # chains and rules
    def add_chain(self, name: str, base: BaseChain | None = None) -> Transaction:
        self.lines.append(f"add chain {self.t} {name} {base.spec()}" if base else f"add chain {self.t} {name}")
        return self

    def flush_chain(self, name: str) -> Transaction:
        self.lines.append(f"flush chain {self.t} {name}")
        return self

    def delete_chain(self, name: str) -> Transaction:
        self.lines.append(f"delete chain {self.t} {name}")
        return self

    def add_rule(self, chain: str, rule: str) -> Transaction:
        self.lines.append(f"add rule {self.t} {chain} {rule}")
        return self

    def add_rules(self, chain: str, rules: Iterable[str]) -> Transaction:
        self.lines += [f"add rule {self.t} {chain} {r}" for r in rules]
        return self

    # maps and sets ("map" or "set" as kind; spec is the body: "type ipv4_addr; flags interval")
    def add_container(self, kind: str, name: str, spec: str) -> Transaction:
        self.lines.append(f"add {kind} {self.t} {name} {{ {spec}; }}")
        return self

    def add_map(self, name: str, spec: str) -> Transaction:
        return self.add_container("map", name, spec)

    def add_set(self, name: str, spec: str) -> Transaction:
        return self.add_container("set", name, spec)

    def delete_container(self, kind: str, name: str) -> Transaction:
        self.lines.append(f"delete {kind} {self.t} {name}")
        return self

    # elements (each already rendered by `element()`)
    def add_elements(self, container: str, items: Iterable[str]) -> Transaction:
        items = list(items)
        for i in range(0, len(items), ELEMENTS_PER_STATEMENT):
            self.lines.append(f"add element {self.t} {container} {{ {', '.join(items[i:i + ELEMENTS_PER_STATEMENT])} }}")
        return self

    def add_element(self, container: str, key: str, value: str = "", comment: str = "") -> Transaction:
        self.lines.append(f"add element {self.t} {container} {{ {element(key, value, comment)} }}")
        return self

    def delete_element(self, container: str, key: str) -> Transaction:
        self.lines.append(f"delete element {self.t} {container} {{ {key} }}")
        return self


@record
class Ruleset:
    """One table's desired state: base chains, chains (rules as text), maps, sets, elements."""
    family: str
    table: str
    base: list[BaseChain] = factory(default_factory=list)
    chains: dict[str, list[str]] = factory(default_factory=dict)              # name -> rules (base chains too)
    maps: dict[str, str] = factory(default_factory=dict)                      # name -> type spec
    sets: dict[str, str] = factory(default_factory=dict)                      # name -> type spec (+ flags)
    elements: dict[str, dict[str, str]] = factory(default_factory=dict)       # map/set -> key -> value ("" for sets)

    def element(self, container: str, key: str, value: str = "") -> None:
        self.elements.setdefault(container, {})[key] = value

    @property
    def t(self) -> str:
        return f"{self.family} {self.table}"

    def transaction(self) -> Transaction:
        return Transaction(self.family, self.table)

    def copy(self) -> Ruleset:
        return Ruleset(self.family, self.table, list(self.base), dict(self.chains), dict(self.maps), dict(self.sets),
                       {c: dict(e) for c, e in self.elements.items()})

    def base_chain(self, name: str) -> BaseChain | None:
        for b in self.base:
            if b.name == name:
                return b
        return None


def merge(into: Ruleset, frag: Ruleset) -> None:
    """A fragment's chains, sets and elements into a whole table."""
    into.chains.update(frag.chains)
    into.sets.update(frag.sets)
    for c, elems in frag.elements.items():
        into.elements.setdefault(c, {}).update(elems)


def full(rs: Ruleset) -> Transaction:
    """The whole table, replacing whatever was there, as one transaction."""
    tx = rs.transaction().replace_table()
    for n, spec in rs.maps.items():
        tx.add_map(n, spec)
    for n, spec in rs.sets.items():
        tx.add_set(n, spec)
    for n in rs.chains:
        tx.add_chain(n, rs.base_chain(n))
    for n, rules in rs.chains.items():
        tx.add_rules(n, rules)
    for c, elems in rs.elements.items():
        tx.add_elements(c, (element(k, v) for k, v in elems.items()))
    return tx


def diff(old: Ruleset, new: Ruleset) -> Transaction:
    """What turns `old` into `new`: changed chains are flushed and refilled, removed ones deleted
    after the elements that point at them, and only changed elements are touched."""
    tx = new.transaction()
    containers = (("map", old.maps, new.maps), ("set", old.sets, new.sets))
    for kind, was, now in containers:  # a container whose type changed is made anew
        for n, spec in now.items():
            if was.get(n) != spec:
                if n in was:
                    tx.delete_container(kind, n)
                tx.add_container(kind, n, spec)
    for n in new.chains:
        if n not in old.chains:
            tx.add_chain(n, new.base_chain(n))
    for n, rules in new.chains.items():
        if old.chains.get(n) != rules:
            if n in old.chains:
                tx.flush_chain(n)
            tx.add_rules(n, rules)
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
                tx.delete_element(c, k)
        for k, v in nw.items():
            if o.get(k) != v:
                tx.add_element(c, k, v)
    for n in old.chains:
        if n not in new.chains:
            tx.flush_chain(n)
    for n in old.chains:
        if n not in new.chains:
            tx.delete_chain(n)
    for kind, was, now in containers:
        for n in was:
            if n not in now:
                tx.delete_container(kind, n)
    return tx
