"""The proxy's partial syncs, checked against a model of the kernel table.

`Table` executes the nft dialect the compiler writes (tables, maps, sets, chains, rules,
elements) the way the kernel would refuse it: a chain is deleted only when nothing points
at it, a jump or goto names a chain that exists, an element is deleted only if present.
Property: after any sequence of Service changes written as partial syncs, the table
equals the one a full sync of the last state writes.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from gingham.model.services import Endpoint, parse_service
from gingham.services import ruleset
from gingham.services.compile import NodeContext, compile_services
from gingham.services.proxy import ServiceProxy

CTX = NodeContext("node-1", "192.168.200.11", "10.244.0.0/16", "10.96.0.0/16")
T = "ip gingham-services"
TARGET = re.compile(r"\b(?:goto|jump) (\S+)")


class Table:
    def __init__(self) -> None:
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
        assert rest == T or rest.startswith(T + " "), line
        rest = rest[len(T) + 1:]
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
            assert TARGET.findall(body) == [t for t in TARGET.findall(body) if t in self.chains], line
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


SHAPES = [
    {},
    {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]},
    {"type": "NodePort", "externalTrafficPolicy": "Local", "ports": [{"port": 80, "targetPort": 8080,
                                                                       "nodePort": 30081}]},
    {"internalTrafficPolicy": "Local"},
    {"sessionAffinity": "ClientIP"},
    {"ports": [{"port": 53, "protocol": "UDP", "targetPort": 8080}]},
    {"externalIPs": ["192.168.200.50"]},
]


def service(i: int, shape: int):
    spec = {"ports": [{"port": 80 + i, "targetPort": 8080}], "clusterIP": f"10.96.0.{20 + i}",
            "selector": {"app": f"s{i}"}, **SHAPES[shape]}
    if "nodePort" in str(spec):
        spec["ports"] = [{**spec["ports"][0], "nodePort": spec["ports"][0]["nodePort"] + 10 * i}]
    return parse_service("default", f"s{i}", {"spec": spec}, "10.96.0.0/16")


def endpoints(i: int, ips: list[int], local: list[bool]):
    return [Endpoint(f"10.244.{1 + (0 if here else 1)}.{ip}", "node-1" if here else "node-2",
                     f"default/p{i}-{ip}", True, True, False, (("", "TCP", 8080), ("", "UDP", 8080)))
            for ip, here in zip(ips, local)]


state = st.lists(st.tuples(st.integers(0, 3), st.integers(0, len(SHAPES) - 1),
                           st.lists(st.integers(2, 9), max_size=4, unique=True),
                           st.lists(st.booleans(), min_size=4, max_size=4)), max_size=4)


def world(picked):
    services, eps = {}, {}
    for i, shape, ips, local in picked:
        s = service(i, shape)
        services[s.key] = s
        eps[s.key] = endpoints(i, ips, local)
    return list(services.values()), eps


@settings(max_examples=150, deadline=None)
@given(st.lists(state, min_size=1, max_size=6))
def test_partial_syncs_end_where_a_full_sync_does(steps):
    kernel = Table()
    proxy = ServiceProxy(CTX, kernel.run)
    for picked in steps:
        services, eps = world(picked)
        proxy.sync(services, eps)
        expected = Table()
        expected.run(ruleset.full(compile_services(CTX, services, eps)))
        assert kernel.chains == expected.chains
        assert kernel.containers == expected.containers
