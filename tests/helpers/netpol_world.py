"""A small cluster for NetworkPolicy by value, and hypothesis strategies for policies on it.

Three namespaces x, y, z (labelled ns=<name>) of three pods a, b, c; pod a of every
namespace runs on node-1, b on node-2, c on node-3, with addresses from each node's
10.244.<n-1>.0/24 as the suite's address plan (tests/conftest.py) has it.
"""

from __future__ import annotations

from hypothesis import strategies as st

from gingham.netpol.evaluate import PodInfo

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
