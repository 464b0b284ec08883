"""NetworkPolicy at scale: 1,000 policies over 1,000 pods (compile, apply, one label change),
and TCP throughput between two allowed pods with and without policies, in one run.
Run: scripts/bench.sh netpol.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from gingham.kernel import nft
from gingham.lab.cluster import Lab
from gingham.model.netpol import parse_policy
from gingham.netpol.compile import TABLE, NetpolCompiler, compile_netpol
from gingham.netpol.evaluate import PodInfo, World
from gingham.kernel.nftables import Transaction, diff, full

sys.path.insert(0, os.path.dirname(__file__))
from lab_bench import PlainVeth, _iperf_once  # noqa: E402


def iperf(server_ns: str, client_ns: str, ip: str) -> float:
    """Best of three 3-second runs, Gbit/s."""
    return max(_iperf_once(server_ns, client_ns, ip) for _ in range(3))

PORTS = (("http", "TCP", 80),)


def synthetic(n_pods: int = 1000, n_policies: int = 1000) -> World:
    pods = [PodInfo(f"ns{i % 20}", f"p{i}", {"app": f"a{i % 50}", "tier": f"t{i % 7}"},
                    f"10.244.{i // 250}.{i % 250 + 2}", "node-1", PORTS) for i in range(n_pods)]
    pols = []
    for i in range(n_policies):
        spec = {"podSelector": {"matchLabels": {"app": f"a{i % 50}"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": f"t{i % 5}"}},
                                       "podSelector": {"matchLabels": {"tier": f"t{i % 7}"}}}],
                             "ports": [{"port": 80}, {"port": 8000, "endPort": 8100}]}]}
        pols.append(parse_policy(f"ns{i % 20}", f"np{i}", {"spec": spec}))
    return World(pods, {f"ns{i}": {"team": f"t{i % 5}"} for i in range(20)}, pols, {"node-1": "192.168.200.11"})


def scale() -> None:
    w = synthetic()
    t = time.perf_counter()
    rs = compile_netpol(w, "node-1")
    t_compile = time.perf_counter() - t
    script = full(rs)
    t = time.perf_counter()
    nft.run(script)
    t_apply = time.perf_counter() - t
    pods = list(w.pods)
    pods[3] = PodInfo(pods[3].namespace, pods[3].name, {**pods[3].labels, "tier": "t0"}, pods[3].ip, "node-1", PORTS)
    w2 = World(pods, w.namespaces, w.policies, w.node_ips)
    t = time.perf_counter()
    rs2 = compile_netpol(w2, "node-1")
    nft.run(diff(rs, rs2))  # compiled whole, written as the difference (the agent until 2026-12-04)
    t_label = time.perf_counter() - t
    agent = NetpolCompiler("node-1")  # what the agent does now: compile only what the change concerns
    agent.compile(w2)
    nft.run(diff(rs2, agent.compile(w2)))
    w3 = World(list(w2.pods), w.namespaces, w.policies, w.node_ips)
    w3.pods[3] = PodInfo(pods[3].namespace, pods[3].name, {**pods[3].labels, "tier": "t1"}, pods[3].ip, "node-1", PORTS)
    t = time.perf_counter()
    rs3 = agent.compile(w3)
    nft.run(diff(rs2, rs3))
    t_incremental = time.perf_counter() - t
    assert rs3 == compile_netpol(w3, "node-1")
    nft.run(Transaction("inet", TABLE).delete_table())
    print(f"1,000 policies over 1,000 pods on one node: {len(rs.chains)} chains, {len(rs.sets)} sets, "
          f"{sum(len(r) for r in rs.chains.values())} rules")
    print(f"  compile {t_compile * 1000:.0f} ms, apply {t_apply * 1000:.0f} ms, "
          f"one label change (compile + apply) {t_label * 1000:.0f} ms whole, {t_incremental * 1000:.1f} ms by changes")


def throughput() -> None:
    docs = ["apiVersion: gingham.dev/v1alpha1\nkind: Cluster\nmetadata: {name: np}\nspec: {nodes: 1, overlay: host-gw}\n",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {app: a}}\nspec: {containers: [{name: c}]}\n",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: b, labels: {app: b}}\nspec: {containers: [{name: c}]}\n"]
    pols = [f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np{i}}}\n"
            f"spec: {{podSelector: {{matchLabels: {{app: other{i}}}}}, ingress: [{{from: [{{podSelector: "
            f"{{matchLabels: {{app: x{i}}}}}}}]}}]}}\n" for i in range(999)]
    pols.append("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-a}\n"
                "spec: {podSelector: {matchLabels: {app: b}}, ingress: [{from: [{podSelector: {matchLabels: {app: a}}}]}]}\n")
    tmp = tempfile.mkdtemp()
    base, extra = os.path.join(tmp, "c.yaml"), os.path.join(tmp, "p.yaml")
    open(base, "w").write("---\n".join(docs))
    open(extra, "w").write("---\n".join(pols))
    lab = Lab("bnp")
    try:
        lab.up([base])
        ip = {p["name"]: p["ip"] for p in lab.pods()}
        a, b = lab.target_netns("default/a"), lab.target_netns("default/b")
        with PlainVeth():
            before = iperf(b, a, ip["b"])
            t = time.perf_counter()
            lab.apply([extra], timeout=300)
            t_apply = time.perf_counter() - t
            after = iperf(b, a, ip["b"])
    finally:
        lab.down()
    print(f"TCP a -> b (allowed), same node: {before:.2f} Gbit/s without policies, {after:.2f} with 1,000 "
          f"(ratio {after / before:.2f}); lab apply of the 1,000 policies: {t_apply:.1f} s")


if __name__ == "__main__":
    scale()
    throughput()
