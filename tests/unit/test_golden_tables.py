"""The Services and NetworkPolicy tables whole, against golden files (tests/helpers/golden.py).

Each table is the transaction the agent writes first, run through FakeNft (so it is also one
the kernel would take) and dumped. A change to a compiler shows here as a diff of the tables.
"""

from __future__ import annotations

import pytest

from gingham.kernel.fakenft import FakeNft
from gingham.kernel.nftables import full
from gingham.model.netpol import parse_policy
from gingham.netpol.compile import TABLE as NETPOL_TABLE
from gingham.netpol.compile import compile_netpol
from gingham.netpol.evaluate import World
from gingham.services.compile import TABLE, compile_services

from ..helpers import golden
from ..helpers.netpol_world import NODES, NS, PODS
from ..helpers.services_world import CTX, world

POLICIES = [
    ("x", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 80}]},
        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": "serve-81-tcp"}]},
        {"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24"]}}],
         "ports": [{"port": 80, "endPort": 81, "protocol": "TCP"}, {"port": 80, "protocol": "UDP"}]}]}),
    ("y", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}, "podSelector": {"matchLabels": {"pod": "a"}}}]},
        {"ports": [{"port": 53, "protocol": "UDP"}]}]}),
    ("z", {"podSelector": {}}),
]


def dump(family: str, table: str, tx: object) -> str:
    kernel = FakeNft()
    kernel.run(tx)  # type: ignore[arg-type]
    return kernel.dump(family, table)


def test_services_table():
    golden.check("services-node-1.nft", dump("ip", TABLE, full(compile_services(CTX, *world()))))


@pytest.mark.parametrize("node", ["node-1", "node-2"])
def test_netpol_table(node):
    w = World(PODS, NS, [parse_policy(ns, f"p{i}", {"spec": s}) for i, (ns, s) in enumerate(POLICIES)], NODES)
    golden.check(f"netpol-{node}.nft", dump("inet", NETPOL_TABLE, full(compile_netpol(w, node))))


def test_a_difference_reads_line_by_line():
    d = golden.diff("a\nb\nc\n", "a\nB\nc\n", "x.nft")
    assert "-b\n" in d and "+B\n" in d and "tests/golden/x.nft" in d
