"""Packets traced through the compiled Services table, one flow per behaviour (no root).

The Services, endpoints and flows are tests/helpers/services_world.py's.
"""

from __future__ import annotations

import pytest

from gingham.kernel.fakenft import FakeNft, Table
from gingham.kernel.nftables import full
from gingham.services.compile import TABLE, compile_services
from gingham.services.trace import UnknownRule, trace

from ..helpers.services_world import CTX, FLOWS, NODE_IPS, POD, world


def table() -> Table:
    kernel = FakeNft()
    kernel.run(full(compile_services(CTX, *world())))
    return kernel.table("ip", TABLE)


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_packet_flows(flow):
    got = trace(table(), flow.src, flow.proto, flow.dst, flow.dport, NODE_IPS, flow.local_origin)
    outcome = ", ".join(got.dnat) if got.dnat and got.verdict == "ACCEPT" else got.verdict
    assert (outcome, got.masq) == (flow.expect, flow.masq), got.matched


def test_headless_services_get_no_address_in_the_table():
    t = table()
    assert not any("10.96.0.31" in k or "None" in k for c in t.containers.values() for k in c)


def test_the_tracer_refuses_rules_it_does_not_know():
    t = table()
    t.chains["services"].insert(0, "ip daddr 10.96.0.20 counter accept")
    with pytest.raises(UnknownRule, match="unmatched rule"):
        trace(t, POD, "tcp", "10.96.0.20", 80, NODE_IPS)
