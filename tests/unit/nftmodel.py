"""A model of one nft table, fed the statements gingham writes, for tests without root.

`Table` executes the nft dialect the compilers write (tables, maps, sets, chains, rules,
elements) and refuses what the kernel would refuse: a chain is deleted only when empty
and nothing points at it, a jump or goto names a chain that exists, an element is
deleted only if present. `trace()` (nft_trace.py) runs packets through it.
"""

from __future__ import annotations

import re

TARGET = re.compile(r"\b(?:goto|jump) (\S+)")


class Table:
    def __init__(self, table: str = "ip gingham-services") -> None:
        self.t = table
        self.containers: dict[str, dict[str, str]] = {}
        self.chains: dict[str, list[str]] = {}

    def referenced(self) -> set[str]:
        refs = {m for rules in self.chains.values() for r in rules for m in TARGET.findall(r)}
        return refs | {m for c in self.containers.values() for v in c.values() for m in TARGET.findall(v)}

    def run(self, script: str) -> None:
        for line in script.splitlines():
            self.line(line)
        assert self.referenced() <= set(self.chains), "a verdict names a chain that does not exist"

    def line(self, line: str) -> None:
        verb, kind, rest = line.split(" ", 2)
        assert rest == self.t or rest.startswith(self.t + " "), line
        rest = rest[len(self.t) + 1:]
        name, _, body = rest.partition(" ")
        if kind == "table":
            if verb == "delete":
                self.containers, self.chains = {}, {}
        elif kind in ("map", "set"):
            if verb == "add":
                self.containers.setdefault(name, {})
            else:
                del self.containers[name]
        elif kind == "chain":
            if verb == "add":
                assert name not in self.chains or body == "", line  # a base chain is declared once
                self.chains.setdefault(name, [])
            elif verb == "flush":
                self.chains[name] = []
            else:
                assert self.chains.pop(name) == [], f"{line}: not empty"
                assert name not in self.referenced(), f"{line}: still pointed at"
        elif kind == "rule":
            assert all(t in self.chains for t in TARGET.findall(body)), line
            self.chains[name].append(body)
        elif kind == "element":
            items = body.strip().removeprefix("{").removesuffix("}").strip().split(", ")
            c = self.containers[name]
            for item in items:
                key, _, value = item.partition(" : ")
                if verb == "add":
                    assert all(t in self.chains for t in TARGET.findall(value)), line
                    c[key] = value
                else:
                    assert key in c, f"{line}: no such element"
                    del c[key]
        else:
            raise AssertionError(f"unexpected statement {line!r}")
