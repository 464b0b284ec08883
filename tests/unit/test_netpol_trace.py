"""The compiled NetworkPolicy tables, traced, agree with the evaluator (no root).

For random policies, every node's `inet gingham-netpol` table is built in the table
model and a new connection between every two pods (and from every node) is walked
through the forward chains it meets: its own node's (egress, and ingress when the
destination is local) and the destination's node's (ingress). The result must be the
pure evaluator's, which the lab tests check against real connections.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gingham.model.netpol import parse_policy
from gingham.netpol.compile import compile_netpol
from gingham.netpol.evaluate import PodInfo, World, evaluate
from gingham.kernel.fakenft import FakeNft, Table
from gingham.kernel.nftables import full
from gingham.services.trace import filter_verdict

from ..helpers.netpol_world import NODES, NS, PODS, policy, spec_of

def tables(world: World) -> dict[str, Table]:
    out = {}
    for node in NODES:
        kernel = FakeNft()
        kernel.run(full(compile_netpol(world, node)))
        out[node] = kernel.table("inet", "gingham-netpol")
    return out


def kernel_allows(t: dict[str, Table], src: str, src_node: str, dst: PodInfo, port: int, proto: str) -> bool:
    """What the forward chains on the way do with a new connection from `src` to `dst`."""
    hops = [src_node] if src_node == dst.node else [src_node, dst.node]
    return all(filter_verdict(t[n], "forward", src, proto.lower(), dst.ip, port).verdict == "ACCEPT" for n in hops)


@settings(max_examples=100, deadline=None)
@given(st.lists(policy, min_size=1, max_size=3))
def test_traced_tables_agree_with_the_evaluator(policies):
    pols = [parse_policy(ns, f"p{i}", {"spec": spec_of(sel, types, ing, eg)})
            for i, (ns, sel, types, ing, eg) in enumerate(policies)]
    world = World(PODS, NS, pols, NODES)
    t = tables(world)
    for port, proto, dst in ((port, proto, dst) for port, proto in ((80, "TCP"), (81, "TCP"), (80, "UDP"))
                             for dst in PODS):
        for src in PODS:
            if src is not dst:
                assert kernel_allows(t, src.ip, src.node, dst, port, proto) == \
                    evaluate(world, src.ip, dst.ip, port, proto).allowed, (src.key, dst.key)
        for node, ip in NODES.items():
            if node != dst.node:  # a node reaches its own pods without the forward hook
                assert filter_verdict(t[dst.node], "forward", ip, proto.lower(), dst.ip, port).verdict == \
                    ("ACCEPT" if evaluate(world, ip, dst.ip, port, proto).allowed else "DROP"), (node, dst.key)
