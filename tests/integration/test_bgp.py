"""overlay: bgp end to end: BIRD on every node and on the lab's router, pods routed natively,
LoadBalancer addresses announced by every node that can serve them and spread by the router."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gingham.lab.cluster import Lab

from ..helpers.lab import PeerServer, from_ns, manifest
from .conftest import shared_lab

pytestmark = pytest.mark.root

CLUSTER = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: bgp}
spec:
  nodes: 3
  overlay: bgp
  loadBalancerPool: 198.51.100.0/28
  bgp:
    asNumber: 64512
    peers: [{address: 192.168.200.1, asNumber: 64500}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 9}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, labels: {app: web}}
spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec: {nodeName: node-3, containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec: {type: LoadBalancer, externalTrafficPolicy: Local, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
"""
NODE_IPS = {"node-1": "192.168.200.11", "node-2": "192.168.200.12", "node-3": "192.168.200.13"}

lab = shared_lab("bgp", lambda tmp: [manifest(tmp.mktemp("bgp"), CLUSTER)])


def in_ns(lab: Lab, target: str, *cmd: str) -> str:
    return subprocess.run(["nsenter", f"--net={lab.target_netns(target) if target != 'router' else router_ns(lab)}",
                           *cmd], capture_output=True, text=True, check=True).stdout


def router_ns(lab: Lab) -> str:
    return f"/run/netns/{lab.ns('router')}"


def router_routes(lab: Lab) -> dict[str, list[str]]:
    """The router's kernel routes learned over BGP: prefix -> next hops."""
    out = {}
    for r in json.loads(in_ns(lab, "router", "ip", "-j", "route", "show", "proto", "bird")):
        hops = [h["gateway"] for h in r["nexthops"]] if "nexthops" in r else [r["gateway"]]
        out[r["dst"] if "/" in r["dst"] else r["dst"] + "/32"] = sorted(hops)
    return out


def lb_ip(lab: Lab, name: str) -> str:
    return next(s for s in lab.services() if s["name"] == name)["externalIP"]


def wait_for(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_pods_on_other_nodes_are_reached_with_their_own_addresses_over_routes_bird_installed(lab):
    pods = {p["name"]: p for p in lab.pods()}
    srv = PeerServer(lab.target_netns("default/web-0"), 7000)
    try:
        from_ns(lab.target_netns("default/client"), pods["web-0"]["ip"], 7000)
        assert srv.last_peer() == pods["client"]["ip"]  # no NAT on the way
    finally:
        srv.close()
    routes = json.loads(in_ns(lab, "node/node-1", "ip", "-j", "route"))
    bird = {r["dst"]: r["gateway"] for r in routes if r.get("protocol") == "bird"}
    assert bird == {"10.244.1.0/24": NODE_IPS["node-2"], "10.244.2.0/24": NODE_IPS["node-3"]}
    links = json.loads(in_ns(lab, "node/node-1", "ip", "-j", "link"))
    assert not [link for link in links if link.get("linkinfo", {}).get("info_kind") == "vxlan"]  # no encapsulation
    assert {link["ifname"]: link["mtu"] for link in links}["eth0"] == 1500


def test_the_router_learns_every_pod_cidr_and_each_load_balancer_address_from_the_nodes_that_serve_it(lab):
    routes = wait_for(lambda: (r := router_routes(lab)) and lb_ip(lab, "web-local") + "/32" in r and r)
    assert routes["10.244.0.0/24"] == [NODE_IPS["node-1"]]
    assert routes["10.244.1.0/24"] == [NODE_IPS["node-2"]]
    assert routes["10.244.2.0/24"] == [NODE_IPS["node-3"]]
    assert routes[lb_ip(lab, "web") + "/32"] == sorted(NODE_IPS.values())  # externalTrafficPolicy Cluster: all
    assert routes[lb_ip(lab, "web-local") + "/32"] == [NODE_IPS["node-2"], NODE_IPS["node-3"]]  # Local: endpoints


def conntrack_hits(lab: Lab, node: str, ip: str) -> int:
    out = subprocess.run(["nsenter", f"--net={lab.target_netns(f'node/{node}')}", "conntrack", "-L", "-d", ip],
                         capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def test_connections_from_outside_to_a_load_balancer_address_go_through_several_nodes(lab):
    ip = lb_ip(lab, "web")
    answers = [from_ns(lab.target_netns("external"), ip, 80) for _ in range(40)]
    assert None not in answers and set(answers) <= {"web-0", "web-1"}
    through = [n for n in NODE_IPS if conntrack_hits(lab, n, ip)]
    assert len(through) >= 2, through  # the router's ECMP spreads them by their ports


def test_lab_get_routes_shows_the_sessions_and_the_routes(lab):
    r = subprocess.run([sys.executable, "-m", "gingham.cli", "lab", "get", "routes", "--name", lab.name, "router",
                        "-o", "json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["router"]
    assert {s["name"]: (s["neighbor"], s["as"], s["state"]) for s in got["sessions"]} == {
        "node_1": (NODE_IPS["node-1"], 64512, "Established"), "node_2": (NODE_IPS["node-2"], 64512, "Established"),
        "node_3": (NODE_IPS["node-3"], 64512, "Established")}
    web = [x for x in got["routes"] if x["prefix"] == lb_ip(lab, "web") + "/32"]
    assert sorted(v for x in web for v in x["via"]) == sorted(NODE_IPS.values()) and sum(x["best"] for x in web) == 1
    table = subprocess.run([sys.executable, "-m", "gingham.cli", "lab", "get", "routes", "node/node-2", "--name",
                            lab.name], capture_output=True, text=True)
    assert table.returncode == 0 and "node/node-2: BGP sessions" in table.stdout and "Established" in table.stdout
    bad = subprocess.run([sys.executable, "-m", "gingham.cli", "lab", "get", "routes", "node/nope", "--name",
                          lab.name], capture_output=True, text=True)
    assert bad.returncode == 3 and bad.stderr.count("\n") == 1 and "no BGP speaker 'node/nope'" in bad.stderr


def bird_pid(lab: Lab, node: str) -> int:
    with open(os.path.join(lab.node_dir(node), "bird.pid")) as f:
        return int(f.read().split()[0])


def test_an_agent_restart_withdraws_no_route(lab):
    before, pid = router_routes(lab), bird_pid(lab, "node-2")
    os.kill(int(lab.meta()["agents"]["node-2"]), signal.SIGKILL)
    seen = []
    for _ in range(10):  # a second without its agent
        seen.append(router_routes(lab))
        time.sleep(0.1)
    lab.restart_agent("node-2")
    for _ in range(20):  # and its successor's first pass
        seen.append(router_routes(lab))
        time.sleep(0.1)
    assert all(s == before for s in seen)
    assert bird_pid(lab, "node-2") == pid  # the new agent took the running BIRD over


def test_bird_killed_is_started_again_and_its_routes_stay_meanwhile(lab):
    """Graceful restart: the router keeps node-2's routes while its BIRD is down, and the
    agent's watchdog starts BIRD again, which takes the sessions back."""
    before, pid = router_routes(lab), bird_pid(lab, "node-2")
    os.kill(pid, signal.SIGKILL)
    seen = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        seen.append(router_routes(lab))
        if os.path.exists(os.path.join(lab.node_dir("node-2"), "bird.pid")) and bird_pid(lab, "node-2") != pid \
                and len(seen) > 30 and seen[-1] == before:
            break
        time.sleep(0.1)
    assert bird_pid(lab, "node-2") != pid  # a new BIRD
    assert all(s["10.244.1.0/24"] == [NODE_IPS["node-2"]] for s in seen)  # node-2's pod CIDR never withdrawn
    assert seen[-1] == before


def underlay_port(lab: Lab, node: str) -> str:
    """The underlay bridge's port that node's eth0 is plugged into."""
    eth0 = json.loads(in_ns(lab, f"node/{node}", "ip", "-j", "link", "show", "eth0"))[0]
    ports = json.loads(subprocess.run(["ip", "-n", lab.ns("underlay"), "-j", "link"], capture_output=True,
                                      text=True, check=True).stdout)
    return next(p["ifname"] for p in ports if p["ifindex"] == eth0["link_index"])


def test_a_node_that_goes_away_is_withdrawn_and_its_addresses_keep_answering_through_the_others(lab):
    ip = lb_ip(lab, "web")
    port = underlay_port(lab, "node-1")
    subprocess.run(["ip", "-n", lab.ns("underlay"), "link", "set", port, "down"], check=True)  # node-1 cut off
    try:
        t0 = time.monotonic()
        gone = wait_for(lambda: NODE_IPS["node-1"] not in router_routes(lab).get(ip + "/32", [NODE_IPS["node-1"]]), 15)
        took = time.monotonic() - t0
        assert gone and "10.244.0.0/24" not in router_routes(lab)
        assert took < 9  # BFD (0.3 s) and the graceful-restart window (6 s): within the 9 s hold time
        answers = [from_ns(lab.target_netns("external"), ip, 80) for _ in range(20)]
        assert None not in answers
    finally:
        subprocess.run(["ip", "-n", lab.ns("underlay"), "link", "set", port, "up"], check=True)
    assert wait_for(lambda: NODE_IPS["node-1"] in router_routes(lab).get(ip + "/32", []), 20)


RACKS = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: racks}
spec:
  nodes: 3
  overlay: OVERLAY
  racks: [{name: a, nodes: [node-1, node-2]}, {name: b, nodes: [node-3]}]
  bgp: {peers: [{address: 192.168.200.1, asNumber: 64500}, {address: 192.168.201.1, asNumber: 64500}]}
---
apiVersion: v1
kind: Pod
metadata: {name: near}
spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 9}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: far}
spec: {nodeName: node-3, containers: [{name: c, ports: [{containerPort: 9}]}]}
"""


@pytest.mark.parametrize("overlay", ["bgp", "vxlan"])
def test_pods_in_two_racks_reach_each_other_through_the_router_with_their_own_addresses(overlay, lab_name, tmp_path):
    """Two L3 segments joined by the lab's router: BGP routes pods natively through it (the
    router learns every pod CIDR over eBGP and passes them on); VXLAN crosses it inside UDP."""
    spec = RACKS.replace("OVERLAY", overlay)
    if overlay != "bgp":
        spec = spec.replace("  bgp: {peers: [{address: 192.168.200.1, asNumber: 64500}, "
                            "{address: 192.168.201.1, asNumber: 64500}]}\n", "")
    lab = lab_name()
    lab.up([manifest(tmp_path, spec)])
    pods = {p["name"]: p for p in lab.pods()}
    assert {n["name"]: n["ip"] for n in lab.nodes()} == {"node-1": "192.168.200.11", "node-2": "192.168.200.12",
                                                        "node-3": "192.168.201.11"}
    srv = PeerServer(lab.target_netns("default/far"), 7000)
    try:
        from_ns(lab.target_netns("default/near"), pods["far"]["ip"], 7000)
        assert srv.last_peer() == pods["near"]["ip"]
    finally:
        srv.close()
    routes = {r["dst"]: r.get("gateway") for r in json.loads(in_ns(lab, "node/node-1", "ip", "-j", "route"))}
    if overlay == "bgp":
        assert routes["10.244.1.0/24"] == "192.168.200.12"  # its rack: straight to the node
        assert routes["10.244.2.0/24"] == "192.168.200.1"   # the other rack: through the router
    assert routes["192.168.201.0/24"] == "192.168.200.1"
    from gingham.lab.trace import describe, trace_connection
    r = trace_connection(lab, "default/near", "default/far", 9, "TCP")
    (end,) = r["endpoints"]
    assert end["path"] == (["node/node-1", "router (192.168.200.1)", "node/node-3 (192.168.201.11)"]
                           if overlay == "bgp" else ["node/node-1", "node/node-3 over VXLAN (10.244.2.0)"])
    assert "route to " + pods["far"]["ip"] in describe(r)
