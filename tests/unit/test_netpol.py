"""NetworkPolicy by value: validation, defaulting, the evaluator's semantics, the compiled table."""

from __future__ import annotations

import pytest

from gingham.model.netpol import NetpolError, parse_policy
from gingham.netpol.compile import compile_netpol, deny_id
from gingham.netpol.evaluate import World, evaluate

from ..helpers.netpol_world import NODES, NS, PODS

IP = {p.key: p.ip for p in PODS}
IP_KEY = "x/a"


def world(*specs):
    pols = [parse_policy(ns, f"p{i}", {"spec": spec}) for i, (ns, spec) in enumerate(specs)]
    return World(PODS, NS, pols, NODES)


def ok(w, src, dst, port=80, proto="TCP"):
    return evaluate(w, IP.get(src, src), IP.get(dst, dst), port, proto).allowed


def test_no_policy_allows_everything_and_deny_all_isolates_only_its_namespace():
    assert ok(world(), "x/a", "y/b")
    w = world(("x", {"podSelector": {}}))
    assert not ok(w, "y/a", "x/b") and not ok(w, "x/a", "x/b")
    assert ok(w, "x/a", "y/b")            # egress of x is not isolated by an ingress-only policy
    assert ok(w, "x/a", "x/a")            # a pod reaching itself
    assert ok(w, "192.168.200.12", "x/b")  # x/b runs on node-2: its own node may always reach it
    assert not ok(w, "192.168.200.11", "x/b")


def test_policy_types_default_and_egress():
    p = parse_policy("x", "e", {"spec": {"podSelector": {}, "egress": [{"to": [{"podSelector": {}}]}]}})
    assert p.ingress_isolates and p.egress_isolates
    w = world(("x", {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}))
    assert ok(w, "x/a", "y/c") and not ok(w, "x/a", "z/c") and not ok(w, "x/a", "x/b") and ok(w, "x/b", "z/c")


def test_and_versus_or_peers():
    both = {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                                      "podSelector": {"matchLabels": {"pod": "b"}}}]}]}
    either = {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                                                       {"podSelector": {"matchLabels": {"pod": "b"}}}]}]}
    w1, w2 = world(("x", both)), world(("x", either))
    assert ok(w1, "y/b", "x/a") and not ok(w1, "y/a", "x/a") and not ok(w1, "x/b", "x/a")
    assert ok(w2, "y/a", "x/a") and ok(w2, "x/b", "x/a") and not ok(w2, "z/b", "x/a")


def test_match_expressions_every_operator():
    def sel(op, values=None):
        e = {"key": "pod", "operator": op}
        if values:
            e["values"] = values
        return world(("x", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [e]}}]}]}))
    assert ok(sel("In", ["b"]), "x/b", "x/a") and not ok(sel("In", ["b"]), "x/c", "x/a")
    assert not ok(sel("NotIn", ["b"]), "x/b", "x/a") and ok(sel("NotIn", ["b"]), "x/c", "x/a")
    assert ok(sel("Exists"), "x/c", "x/a") and not ok(sel("DoesNotExist"), "x/c", "x/a")


def test_ports_named_ranges_protocols():
    named = world(("x", {"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}))
    assert ok(named, "y/a", "x/a", 81) and not ok(named, "y/a", "x/a", 80)
    rng = world(("x", {"podSelector": {}, "ingress": [{"ports": [{"port": 79, "endPort": 81}]}]}))
    assert ok(rng, "y/a", "x/a", 80) and not ok(rng, "y/a", "x/a", 82)
    udp = world(("x", {"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP", "port": 80}]}]}))
    assert ok(udp, "y/a", "x/a", 80, "UDP") and not ok(udp, "y/a", "x/a", 80, "TCP")  # no protocol means TCP
    sctp = world(("x", {"podSelector": {}, "ingress": [{"ports": [{"protocol": "SCTP", "port": 80}]}]}))
    assert ok(sctp, "y/a", "x/a", 80, "SCTP") and not ok(sctp, "y/a", "x/a", 80)


def test_ip_block_with_except_applies_to_pods():
    w = world(("x", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16",
                                                                          "except": ["10.244.1.0/24"]}}]}]}))
    assert ok(w, "z/a", "x/a") and ok(w, "z/c", "x/a")   # node-1's and node-3's pods
    assert not ok(w, "y/b", "x/a") and not ok(w, "z/b", "x/a")  # node-2's 10.244.1.0/24 is excepted


def test_explanations_name_the_policy_and_rule():
    w = world(("x", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    v = evaluate(w, IP["x/b"], IP["x/a"], 80)
    assert v.ingress.reason == "allowed by x/p0 ingress[0]"
    v = evaluate(w, IP["x/c"], IP["x/a"], 80)
    assert "isolated for ingress by x/p0 and no rule matches" in v.ingress.reason


@pytest.mark.parametrize("spec,field", [
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}, "spec.ingress[0].from[0].ipBlock.cidr"),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"]}}]}]},
     "spec.ingress[0].from[0].ipBlock.except[0]"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}, "spec.ingress[0].ports[0].port"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "endPort": 70}]}]}, "spec.ingress[0].ports[0].endPort"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}, "spec.podSelector.matchExpressions[0].operator"),
    ({"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}, "spec.ingress[0].ports[0].protocol"),
    ({"ingress": []}, "spec.podSelector"),
])
def test_invalid_policies_are_refused_naming_the_field(spec, field):
    with pytest.raises(NetpolError) as e:
        parse_policy("x", "bad", {"spec": spec})
    assert e.value.field == field


def test_compiled_table_jumps_only_for_isolated_local_pods():
    w = world(("x", {"podSelector": {"matchLabels": {"pod": "a"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 80}]}]}))
    rs = compile_netpol(w, "node-1")
    assert set(rs.elements["ingress-pods"]) == {IP["x/a"]} and not rs.elements.get("egress-pods")
    chain = rs.elements["ingress-pods"][IP["x/a"]].removeprefix("jump ")
    assert rs.chains[chain][0] == "ip saddr 192.168.200.11 return"
    assert rs.chains[chain][-1] == f'log prefix "gingham-np I {deny_id(IP_KEY)}" group 100 drop'  # and the recorder hears
    (line,) = [r for r in rs.chains[chain][1:-1]]
    name = line.split("@")[1].split()[0]
    assert rs.elements[name] == {f"{IP['x/b']}/32": ""} and line.endswith("meta l4proto tcp th dport 80 return")
    assert compile_netpol(w, "node-2").elements.get("ingress-pods", {}) == {}  # x/a is not on node-2
