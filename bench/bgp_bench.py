"""overlay bgp: how long a node that starts takes to be reachable, and how fast a node that goes
away is withdrawn.

One 3-node lab on overlay bgp with the lab's router as external peer, a pod on each node.
Start: node-2's agent and BIRD are killed (the others withdraw its pod CIDR when BFD says it
is gone), then its agent is started again, as on a node that boots: the time from the agent's
start to a connection from node-1's pod to node-2's pod succeeding (BIRD started by the
agent, sessions up, routes in the kernels). Away: node-3's underlay port is set down; the
time until the router's route to a LoadBalancer address no longer has node-3. Each case 5
times. Run: scripts/bench.sh bgp.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import tempfile
import time

from gingham.kernel import netns
from gingham.lab.cluster import Lab
from gingham.lab.probe import probe

CLUSTER = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: bgpbench}
spec:
  nodes: 3
  overlay: bgp
  loadBalancerPool: 198.51.100.0/28
  bgp: {peers: [{address: 192.168.200.1, asNumber: 64500}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
""" + "".join(f"""---
apiVersion: v1
kind: Pod
metadata: {{name: web-{i}, labels: {{app: web}}}}
spec: {{nodeName: node-{i}, containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]}}
""" for i in (1, 2, 3))
ROUNDS = 5


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def reachable(lab: Lab, src: str, ip: str) -> bool:
    with netns.entered(lab.target_netns(src)):
        return probe(ip, 8080, "TCP", 0.2) is not None


def start_time(lab: Lab, ips: dict[str, str]) -> float:
    with open(os.path.join(lab.node_dir("node-2"), "bird.pid")) as f:
        kill(int(f.read().split()[0]))
    kill(int(lab.meta()["agents"]["node-2"]))
    while reachable(lab, "default/web-1", ips["web-2"]):  # withdrawn from node-1 (BFD)
        time.sleep(0.05)
    t0 = time.monotonic()
    lab.restart_agent("node-2")
    while not reachable(lab, "default/web-1", ips["web-2"]):
        time.sleep(0.01)
    return time.monotonic() - t0


def router_hops(lab: Lab, ip: str) -> list[str]:
    out = subprocess.run(["ip", "-n", lab.ns("router"), "-j", "route", "show", ip], capture_output=True,
                         text=True).stdout
    routes = json.loads(out or "[]")
    return [h["gateway"] for r in routes for h in r.get("nexthops", [r])]


def away_time(lab: Lab, lb: str) -> float:
    eth0 = json.loads(subprocess.run(["ip", "-n", lab.ns("node-node-3"), "-j", "link", "show", "eth0"],
                                     capture_output=True, text=True).stdout)[0]
    ports = json.loads(subprocess.run(["ip", "-n", lab.ns("underlay"), "-j", "link"], capture_output=True,
                                      text=True).stdout)
    port = next(p["ifname"] for p in ports if p["ifindex"] == eth0["link_index"])
    t0 = time.monotonic()
    subprocess.run(["ip", "-n", lab.ns("underlay"), "link", "set", port, "down"], check=True)
    while "192.168.200.13" in router_hops(lab, lb):
        time.sleep(0.01)
    took = time.monotonic() - t0
    subprocess.run(["ip", "-n", lab.ns("underlay"), "link", "set", port, "up"], check=True)
    while "192.168.200.13" not in router_hops(lab, lb):  # back before the next round
        time.sleep(0.05)
    return took


def main() -> None:
    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    f.write(CLUSTER)
    f.close()
    lab = Lab("bgpbench")
    lab.down()
    t = time.monotonic()
    lab.up([f.name])
    print(f"lab up (3 nodes, overlay bgp, a router): {time.monotonic() - t:.2f} s, every node's routes in place")
    try:
        ips = {p["name"]: p["ip"] for p in lab.pods()}
        lb = next(s for s in lab.services() if s["name"] == "web")["externalIP"]
        starts = [start_time(lab, ips) for _ in range(ROUNDS)]
        aways = [away_time(lab, lb) for _ in range(ROUNDS)]
    finally:
        lab.down()
    for name, xs in (("a node's agent starting -> its pod reachable from another node", starts),
                     ("a node cut off -> withdrawn from the router's route (BFD)", aways)):
        print(f"{name}: median {statistics.median(xs):.2f} s, min {min(xs):.2f}, max {max(xs):.2f} ({ROUNDS} runs)")


if __name__ == "__main__":
    main()
