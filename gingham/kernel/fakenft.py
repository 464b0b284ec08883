"""A model of the kernel's nftables that runs transactions as the kernel does: whole or not at all.

`FakeNft.run` takes the same scripts `kernel.nft.run` does (a `Transaction` or its text) and
refuses (`Refused`) what the kernel would refuse: a jump to a chain that does not exist,
deleting an object that is not there, declaring a base chain twice with other hooks, deleting
a chain that is not empty or still pointed at. A refused transaction leaves every table as it
was. `dump()` prints a table in a stable text form for golden tests; `table()` gives the
`Table` the Services tracer walks. Tests check rules through it without root; the root tests
check the model against the kernel (tests/integration/test_services_table.py).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .nftables import Transaction

TARGET = re.compile(r"\b(?:goto|jump) (\S+)")
_COMMENT = re.compile(r' comment "[^"]*"')


class Refused(Exception):
    """A statement the kernel would refuse (a dangling jump, deleting what is not there...)."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise Refused(what)


class Table:
    """One table's chains (rules as text) and maps/sets (key -> value, "" for sets)."""

    def __init__(self, table: str) -> None:
        self.t = table
        self.containers: dict[str, dict[str, str]] = {}
        self.kinds: dict[str, str] = {}          # container -> "map" or "set"
        self.specs: dict[str, str] = {}          # container -> its "{ type ...; flags ...; }"
        self.chains: dict[str, list[str]] = {}
        self.hooks: dict[str, str] = {}           # base chain -> its "{ type ... }" declaration

    def copy(self) -> Table:
        t = Table(self.t)
        t.containers = {n: dict(c) for n, c in self.containers.items()}
        t.kinds, t.specs, t.hooks = dict(self.kinds), dict(self.specs), dict(self.hooks)
        t.chains = {n: list(r) for n, r in self.chains.items()}
        return t

    def referenced(self) -> set[str]:
        refs = {m for rules in self.chains.values() for r in rules for m in TARGET.findall(r)}
        return refs | {m for c in self.containers.values() for v in c.values() for m in TARGET.findall(v)}

    def command(self, verb: str, kind: str, rest: str, line: str) -> None:
        """One statement on this table; `rest` is what follows the table's name."""
        name, _, body = rest.partition(" ")
        if kind in ("map", "set"):
            if verb == "add":
                _check(self.kinds.get(name, kind) == kind, f"{line}: a {self.kinds.get(name)} has that name")
                _check(self.specs.get(name, body) == body, f"{line}: it exists with another type")
                self.containers.setdefault(name, {})
                self.kinds[name], self.specs[name] = kind, body
            elif verb == "flush":
                _check(name in self.containers, f"{line}: no such {kind}")
                self.containers[name] = {}
            else:
                _check(name in self.containers, f"{line}: no such {kind}")
                _check(not re.search(rf"@{re.escape(name)}(?![\w/.-])", " ".join(r for rules in self.chains.values() for r in rules)),
                       f"{line}: a rule still uses it")
                del self.containers[name], self.kinds[name]
                self.specs.pop(name, None)
        elif kind == "chain":
            if verb == "add":
                if body:
                    _check(self.hooks.get(name, body) == body, f"{line}: declared before with another hook")
                    self.hooks[name] = body
                self.chains.setdefault(name, [])
            elif verb == "flush":
                _check(name in self.chains, f"{line}: no such chain")
                self.chains[name] = []
            else:
                _check(name in self.chains, f"{line}: no such chain")
                _check(self.chains[name] == [], f"{line}: not empty")
                del self.chains[name]
                self.hooks.pop(name, None)
                _check(name not in self.referenced(), f"{line}: still pointed at")
        elif kind == "rule":
            _check(name in self.chains, f"{line}: no such chain")
            _check(all(t in self.chains for t in TARGET.findall(body)), f"{line}: jumps to a chain that does not exist")
            self.chains[name].append(body)
        elif kind == "element":
            _check(name in self.containers, f"{line}: no such map or set")
            items = body.strip().removeprefix("{").removesuffix("}").strip().split(", ")
            c = self.containers[name]
            for item in items:
                key, _, value = _COMMENT.sub("", item).partition(" : ")
                if verb == "add":
                    _check(all(t in self.chains for t in TARGET.findall(value)), f"{line}: jumps to a chain that does not exist")
                    _check((value != "") == (self.kinds[name] == "map"), f"{line}: {self.kinds[name]} element {item!r}")
                    c[key] = value
                else:
                    _check(key in c, f"{line}: no such element")
                    del c[key]
        else:
            raise Refused(f"unexpected statement {line!r}")

    def dump(self) -> str:
        """The table as text, every part sorted: what golden files hold."""
        out = [f"table {self.t} {{"]
        for n in sorted(self.containers):
            out.append(f"  {self.kinds[n]} {n} {{")
            if self.specs.get(n):
                out.append("    " + self.specs[n].removeprefix("{ ").removesuffix(" }"))
            out += [f"    {k} : {v}" if v else f"    {k}" for k, v in sorted(self.containers[n].items())]
            out.append("  }")
        for n in sorted(self.chains):
            out.append(f"  chain {n} {{")
            if n in self.hooks:
                out.append("    " + self.hooks[n].removeprefix("{ ").removesuffix(" }"))
            out += [f"    {r}" for r in self.chains[n]]
            out.append("  }")
        out.append("}")
        return "\n".join(out) + "\n"


class FakeNft:
    """Every table the transactions made, keyed by "family name"."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}

    def run(self, script: str | Transaction) -> None:
        """Applies a transaction whole, or raises `Refused` and changes nothing."""
        before = {k: t.copy() for k, t in self.tables.items()}
        try:
            for line in str(script).splitlines():
                if line.strip():
                    self._line(line)
            for t in self.tables.values():
                _check(t.referenced() <= set(t.chains), f"table {t.t}: a verdict names a chain that does not exist")
        except Exception:
            self.tables = before
            raise

    def _line(self, line: str) -> None:
        parts = line.split(" ", 4)
        _check(len(parts) >= 4, f"unexpected statement {line!r}")
        verb, kind, family, name = parts[:4]
        key = f"{family} {name}"
        if kind == "table":
            if verb == "add":
                self.tables.setdefault(key, Table(key))
            elif verb == "delete":
                _check(key in self.tables, f"{line}: no such table")
                del self.tables[key]
            else:
                raise Refused(f"unexpected statement {line!r}")
            return
        _check(key in self.tables, f"{line}: no such table")
        self.tables[key].command(verb, kind, parts[4] if len(parts) > 4 else "", line)

    def table(self, family: str, name: str) -> Table:
        return self.tables[f"{family} {name}"]

    def dump(self, family: str | None = None, name: str | None = None) -> str:
        """One table as text, or every table in name order."""
        if family is not None and name is not None:
            return self.table(family, name).dump()
        return "".join(self.tables[k].dump() for k in sorted(self.tables))
