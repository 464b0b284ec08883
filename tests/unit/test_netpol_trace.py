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
from gingham.services import ruleset
from gingham.services.trace import Table, filter_verdict

PORTS = (("serve-80-tcp", "TCP", 80), ("serve-81-tcp", "TCP", 81), ("serve-80-udp", "UDP", 80))
PODS = [PodInfo(ns, p, {"pod": p}, f"10.244.{j}.{i + 2}", f"node-{j + 1}", PORTS)
        for i, ns in enumerate("xyz") for j, p in enumerate("abc")]
NS = {"x": {"ns": "x"}, "y": {"ns": "y"}, "z": {"ns": "z"}}
NODES = {"node-1": "192.168.200.11", "node-2": "192.168.200.12", "node-3": "192.168.200.13"}

labels = st.sampled_from([{}, {"pod": "a"}, {"pod": "b"}])
ns_labels = st.sampled_from([None, {}, {"ns": "x"}, {"ns": "y"}])
peer = st.one_of(
    st.builds(lambda p, n: {"podSelector": {"matchLabels": p}} if n is None else
              {"podSelector": {"matchLabels": p}, "namespaceSelector": {"matchLabels": n}}, labels, ns_labels),
    st.builds(lambda n: {"namespaceSelector": {"matchLabels": n}}, st.sampled_from([{}, {"ns": "y"}, {"ns": "z"}])),
    st.sampled_from([{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24"]}},
                     {"ipBlock": {"cidr": "192.168.200.0/24"}}, {"ipBlock": {"cidr": "10.244.2.0/24"}}]))
port = st.sampled_from([{"port": 80}, {"port": 81, "protocol": "TCP"}, {"port": "serve-81-tcp"},
                        {"port": 80, "protocol": "UDP"}, {"port": 80, "endPort": 81}])
rule = st.fixed_dictionaries({}, optional={"peers": st.lists(peer, min_size=1, max_size=2),
                                           "ports": st.lists(port, min_size=1, max_size=2)})
policy = st.tuples(st.sampled_from("xyz"), labels, st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]),
                   st.lists(rule, max_size=2), st.lists(rule, max_size=2))


def spec_of(selector, types, ingress, egress):
    def rules(rs, key):
        return [{**({key: r["peers"]} if "peers" in r else {}), **({"ports": r["ports"]} if "ports" in r else {})}
                for r in rs]
    spec = {"podSelector": {"matchLabels": selector}, "policyTypes": types}
    if "Ingress" in types:
        spec["ingress"] = rules(ingress, "from")
    if "Egress" in types:
        spec["egress"] = rules(egress, "to")
    return spec


def tables(world: World) -> dict[str, Table]:
    out = {}
    for node in NODES:
        t = Table("inet gingham-netpol")
        t.run(ruleset.full(compile_netpol(world, node)))
        out[node] = t
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
