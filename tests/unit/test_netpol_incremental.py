"""NetworkPolicy compiled by changes equals NetworkPolicy compiled from scratch, on every node."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gingham.model.netpol import parse_policy
from gingham.netpol.compile import NetpolCompiler, compile_netpol
from gingham.netpol.evaluate import PodInfo, World

from ..helpers.netpol_world import NODES, NS, PODS, policy, spec_of

relabel = st.tuples(st.just("relabel"), st.integers(0, len(PODS) - 1),
                    st.sampled_from([{}, {"pod": "a"}, {"pod": "b"}, {"pod": "c", "extra": "1"}]))
move = st.tuples(st.just("address"), st.integers(0, len(PODS) - 1), st.integers(30, 40))
drop = st.tuples(st.just("pod"), st.integers(0, len(PODS) - 1), st.booleans())
ns_change = st.tuples(st.just("namespace"), st.sampled_from("xyz"), st.sampled_from([{}, {"ns": "y"}, {"ns": "z"}]))
pol_change = st.tuples(st.just("policy"), st.integers(0, 3), st.one_of(st.none(), policy))
node_change = st.tuples(st.just("nodes"), st.sampled_from(list(NODES)), st.sampled_from(["192.168.200.99", None]))
step = st.one_of(relabel, move, drop, ns_change, pol_change, node_change)


@settings(max_examples=100, deadline=None)
@given(st.lists(policy, max_size=3), st.lists(step, min_size=1, max_size=6))
def test_compiled_by_changes_equals_compiled_from_scratch(start, steps) -> None:
    pods = {p.key: p for p in PODS}
    namespaces = {k: dict(v) for k, v in NS.items()}
    policies = {i: parse_policy(ns, f"np{i}", {"spec": spec_of(sel, types, ing, eg)})
                for i, (ns, sel, types, ing, eg) in enumerate(start)}
    nodes = dict(NODES)
    compilers = {n: NetpolCompiler(n) for n in NODES}

    def world() -> World:
        return World(list(pods.values()), dict(namespaces), [policies[k] for k in sorted(policies)], dict(nodes))

    for n, c in compilers.items():
        assert c.compile(world()) == compile_netpol(world(), n)
    for kind, a, b in steps:
        if kind == "relabel":
            p = PODS[a]
            pods[p.key] = PodInfo(p.namespace, p.name, b, p.ip, p.node, p.ports)
        elif kind == "address":
            p = PODS[a]
            pods[p.key] = PodInfo(p.namespace, p.name, p.labels, f"10.244.{b}.2", p.node, p.ports)
        elif kind == "pod":
            (pods.__setitem__(PODS[a].key, PODS[a]) if b else pods.pop(PODS[a].key, None))
        elif kind == "namespace":
            namespaces[a] = b
        elif kind == "policy":
            if b is None:
                policies.pop(a, None)
            else:
                ns, sel, types, ing, eg = b
                policies[a] = parse_policy(ns, f"np{a}", {"spec": spec_of(sel, types, ing, eg)})
        elif b is None:
            nodes.pop(a, None)
        else:
            nodes[a] = b
        w = world()
        for n, c in compilers.items():
            assert c.compile(w) == compile_netpol(w, n), (kind, a, b, n)
