"""The lab: `lab up` time as pods grow, and pod-to-pod TCP throughput against a plain veth pair.

Throughput is iperf3 (Debian's), one TCP stream for a few seconds, all in one run: a bare
veth pair between two namespaces (the limit here), then pods on the same node, then
across nodes on VXLAN, on host-gw and on BGP (routes BIRD learned, no encapsulation). Run
inside the sandbox: scripts/bench.sh lab [up|throughput].
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from gingham.kernel import netns
from gingham.lab.cluster import Lab

SECONDS = 3
REPEATS = 5


def cluster(nodes: int, pods: int, overlay: str) -> str:
    docs = [f"apiVersion: gingham.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: b}}\n"
            f"spec: {{nodes: {nodes}, overlay: {overlay}}}\n"]
    for i in range(pods):
        docs.append(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}}}\n"
                    f"spec: {{containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}\n")
    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    f.write("---\n".join(docs))
    f.close()
    return f.name


def _iperf_once(server_ns: str, client_ns: str, ip: str) -> float:
    srv = subprocess.Popen(["ip", "netns", "exec", os.path.basename(server_ns), "iperf3", "-s", "-1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    out = subprocess.run(["ip", "netns", "exec", os.path.basename(client_ns), "iperf3", "-c", ip, "-t", str(SECONDS),
                          "-J"], capture_output=True, text=True).stdout
    srv.wait(10)
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


class PlainVeth:
    """Two namespaces joined by a bare veth pair: the physical limit, measured next to each case."""

    def __enter__(self) -> "PlainVeth":
        self.a, self.b = netns.add("bench-va"), netns.add("bench-vb")
        for cmd in (["ip", "link", "add", "va", "netns", "bench-va", "type", "veth", "peer", "vb", "netns", "bench-vb"],
                    ["ip", "-n", "bench-va", "addr", "add", "10.99.0.1/24", "dev", "va"],
                    ["ip", "-n", "bench-vb", "addr", "add", "10.99.0.2/24", "dev", "vb"],
                    ["ip", "-n", "bench-va", "link", "set", "va", "up"], ["ip", "-n", "bench-vb", "link", "set", "vb", "up"],
                    ["ip", "-n", "bench-va", "link", "set", "lo", "up"], ["ip", "-n", "bench-vb", "link", "set", "lo", "up"]):
            subprocess.run(cmd, check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        netns.delete("bench-va")
        netns.delete("bench-vb")


def throughput() -> None:
    """Both overlays' labs up side by side and every case measured in turn, round after round,
    with the bare veth pair in each round: drift on this VM hits every case alike."""
    labs, cases = [], []
    with PlainVeth() as veth:
        try:
            for overlay in ("host-gw", "vxlan", "bgp"):
                lab = Lab(f"bt{overlay.replace('-', '')}")
                labs.append(lab)
                lab.up([cluster(2, 0, overlay)])
                pods = "---\n".join(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {n}}}\n"
                                    f"spec: {{nodeName: {node}, containers: [{{name: c}}]}}\n"
                                    for n, node in (("a", "node-1"), ("b", "node-1"), ("c", "node-2")))
                f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
                f.write(pods)
                f.close()
                lab.apply([f.name])
                ip = {p["name"]: p["ip"] for p in lab.pods()}
                a, b, c = (lab.target_netns(f"default/{n}") for n in "abc")
                if overlay == "host-gw":
                    cases.append(("pod -> pod, same node", b, a, ip["b"]))
                cases.append((f"pod -> pod, across nodes, {overlay}", c, a, ip["c"]))
            best = {name: 0.0 for name, *_ in cases}
            limit = 0.0
            for _ in range(REPEATS):
                limit = max(limit, _iperf_once(veth.b, veth.a, "10.99.0.2"))
                for name, srv, cli, dst in cases:
                    best[name] = max(best[name], _iperf_once(srv, cli, dst))
        finally:
            for lab in labs:
                lab.down()
    print(f"TCP throughput, 1 stream, {SECONDS}s, best of {REPEATS} rounds (iperf3), every case and a plain veth "
          "pair in each round:")
    for name, gbps in best.items():
        print(f"  {name:38s} {gbps:6.2f} Gbit/s   plain veth {limit:6.2f}   ratio {gbps / limit:5.2f}")
    hostgw = next(g for n, g in best.items() if "host-gw" in n)
    vxlan = next(g for n, g in best.items() if "vxlan" in n)
    bgp = next(g for n, g in best.items() if "bgp" in n)
    print(f"  vxlan / host-gw = {vxlan / hostgw:.2f}   bgp / host-gw = {bgp / hostgw:.2f}")


def up_times() -> None:
    print("lab up (3 nodes, vxlan), seconds until every pod has its address and listens:")
    for pods in (0, 30, 90, 180):
        lab = Lab("bu")
        try:
            t = time.monotonic()
            lab.up([cluster(3, pods, "vxlan")], timeout=600)
            dt = time.monotonic() - t
        finally:
            lab.down()
        print(f"  {pods:4d} pods ({pods // 3:3d} per node): {dt:6.2f} s" + (f"   {1000 * dt / pods:.0f} ms/pod" if pods else ""))


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("all", "up"):
        up_times()
    if what in ("all", "throughput"):
        throughput()
