"""Labs on the real kernel: both overlays, apply/delete, bad manifests, agent restarts, down."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from gingham.kernel import netns
from gingham.lab.cluster import Lab, LabError
from gingham.model.manifest import ManifestError

from ..helpers.lab import from_ns, manifest



def cluster_yaml(overlay: str, nodes: int = 3) -> str:
    pods = "".join(f"""
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: p{i}, namespace: {ns}, labels: {{app: p{i}}}}}
        spec:
          nodeName: node-{node}
          containers: [{{name: c, ports: [{{containerPort: 80}}, {{containerPort: 53, protocol: UDP}}]}}]
        """ for i, (ns, node) in enumerate([("default", 1), ("default", 1), ("other", 2), ("other", min(3, nodes))]))
    return f"""
        apiVersion: gingham.dev/v1alpha1
        kind: Cluster
        metadata: {{name: t}}
        spec: {{nodes: {nodes}, overlay: {overlay}}}
        """ + pods


def peer_seen_by(lab: Lab, server: str, client: str, port: int = 9000) -> str:
    """The source address `server` sees when `client` connects: proves there is no NAT between pods."""
    srv_ns, cli_ns = lab.target_netns(server), lab.target_netns(client)
    result: list[str] = []
    ready = threading.Event()

    def serve() -> None:
        with netns.entered(srv_ns):
            s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(1)
        s.settimeout(5)
        ready.set()
        conn, addr = s.accept()
        result.append(addr[0])
        conn.close()
        s.close()

    t = threading.Thread(target=serve)
    t.start()
    ready.wait(5)
    with netns.entered(cli_ns):
        c = socket.create_connection((lab.resolve(server), port), timeout=3)
    c.close()
    t.join(5)
    return result[0]


@pytest.mark.parametrize("overlay", ["vxlan", "host-gw"])
def test_flat_pod_network_on_both_overlays(overlay, lab_name, tmp_path):
    lab = lab_name()
    lab.up([manifest(tmp_path, cluster_yaml(overlay))])
    pods = {f"{p['namespace']}/{p['name']}": p for p in lab.pods()}
    assert {p["node"] for p in pods.values()} == {"node-1", "node-2", "node-3"}
    assert all(p["ip"].startswith("10.244.") for p in pods.values())
    src = lab.target_netns("default/p0")
    assert from_ns(src, pods["default/p1"]["ip"], 80) == "p1"          # same node
    assert from_ns(src, pods["other/p2"]["ip"], 80) == "p2"            # across nodes
    assert from_ns(src, pods["other/p3"]["ip"], 53, "UDP") == "p3"     # across nodes, UDP
    assert peer_seen_by(lab, "other/p3", "default/p0") == pods["default/p0"]["ip"]  # no NAT between pods
    node2 = lab.target_netns("node/node-2")
    assert from_ns(node2, pods["default/p0"]["ip"], 80) == "p0"        # node -> pod on another node
    assert from_ns(src, "192.168.200.12", 22, timeout=0.5) is None     # nothing listens there...
    with netns.entered(lab.target_netns("node/node-2")):  # ...but the node is reachable from the pod:
        s = socket.socket()
        s.bind(("0.0.0.0", 9100))
        s.listen(1)
    try:
        with netns.entered(src):
            socket.create_connection(("192.168.200.12", 9100), timeout=2).close()
    finally:
        s.close()
    # MTU: the VXLAN header is accounted for
    out = subprocess.run(["ip", "netns", "exec", os.path.basename(src), "ip", "-j", "link", "show", "eth0"],
                         capture_output=True, text=True).stdout
    assert json.loads(out)[0]["mtu"] == (1450 if overlay == "vxlan" else 1500)
    nodes = {n["name"]: n for n in lab.nodes()}
    assert all(n["status"] == "Ready" for n in nodes.values())


def test_apply_and_delete_reach_the_agents(lab_name, tmp_path):
    lab = lab_name()
    lab.up([manifest(tmp_path, cluster_yaml("vxlan", 2))])
    extra = manifest(tmp_path, """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: default}
        spec:
          replicas: 2
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec: {containers: [{name: w, ports: [{containerPort: 80}]}]}
        """, "extra.yaml")
    lab.apply([extra])
    pods = {f"{p['namespace']}/{p['name']}": p for p in lab.pods()}
    assert {"default/web-0", "default/web-1"} <= set(pods)
    assert pods["default/web-0"]["node"] != pods["default/web-1"]["node"]
    src = lab.target_netns("other/p2")
    assert from_ns(src, pods["default/web-1"]["ip"], 80) == "web-1"
    relabel = manifest(tmp_path, """
        apiVersion: v1
        kind: Pod
        metadata: {name: p0, namespace: default, labels: {app: p0, tier: front}}
        spec:
          nodeName: node-1
          containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]}]
        """, "relabel.yaml")
    ip_before = pods["default/p0"]["ip"]
    lab.apply([relabel])
    p0 = next(p for p in lab.pods() if p["name"] == "p0")
    assert p0["labels"] == {"app": "p0", "tier": "front"} and p0["ip"] == ip_before  # same pod, new labels
    web_ns = pods["default/web-1"]["netns"]
    lab.delete([extra])
    assert not any(p["name"].startswith("web-") for p in lab.pods())
    assert not netns.exists(netns.path_of(web_ns))
    assert from_ns(src, pods["default/web-1"]["ip"], 80, timeout=0.5) is None


@pytest.mark.parametrize("body,field", [
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {containers: [{name: c}]}\n", "metadata.name"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c, ports: [{containerPort: 70000}]}]}\n",
     "containerPort"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {nodeName: node-9, containers: [{name: c}]}\n", "spec.nodeName"),
    ("apiVersion: gingham.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec: {overlay: wireguard}\n", "spec.overlay"),
    ("apiVersion: v1\nkind: Gadget\nmetadata: {name: x}\n", "apiVersion/kind"),
])
def test_a_bad_manifest_changes_nothing(body, field, lab_name, tmp_path):
    bad = manifest(tmp_path, "apiVersion: v1\nkind: Namespace\nmetadata: {name: fine}\n---\n" + body, "bad.yaml")
    before = set(os.listdir("/run/netns"))
    fresh = lab_name()
    with pytest.raises(ManifestError) as e:
        fresh.up([bad])
    assert e.value.file == bad and e.value.doc == 2 and field in e.value.field
    assert set(os.listdir("/run/netns")) == before and not fresh.exists()
    lab = lab_name()
    lab.up([manifest(tmp_path, cluster_yaml("host-gw", 2))])
    rev = lab.revision()
    with pytest.raises(ManifestError):
        lab.apply([bad])
    assert lab.revision() == rev and len(lab.pods()) == 4


def test_agent_restart_keeps_established_connections(lab_name, tmp_path):
    lab = lab_name()
    lab.up([manifest(tmp_path, cluster_yaml("vxlan", 2))])
    pods = {f"{p['namespace']}/{p['name']}": p for p in lab.pods()}
    srv_ns, cli_ns = lab.target_netns("other/p2"), lab.target_netns("default/p0")
    with netns.entered(srv_ns):
        srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 9200))
    srv.listen(1)
    with netns.entered(cli_ns):
        cli = socket.create_connection((pods["other/p2"]["ip"], 9200), timeout=3)
    conn, _ = srv.accept()
    meta = lab.meta()
    for node in ("node-1", "node-2"):
        os.kill(int(meta["agents"][node]), signal.SIGKILL)
    time.sleep(0.3)
    echoes = 0
    for node in ("node-1", "node-2"):
        lab.restart_agent(node)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # traffic keeps flowing while the agents come back
        cli.sendall(b"x")
        conn.settimeout(2)
        assert conn.recv(1) == b"x"
        echoes += 1
        time.sleep(0.05)
    lab.rewrite(30)
    cli.sendall(b"y")
    assert conn.recv(1) == b"y"
    after = {f"{p['namespace']}/{p['name']}": p for p in lab.pods()}
    assert {k: v["ip"] for k, v in after.items()} == {k: v["ip"] for k, v in pods.items()}
    assert echoes > 10
    for s in (cli, conn, srv):
        s.close()


def test_two_labs_side_by_side_and_down_twice(lab_name, tmp_path):
    a, b = lab_name(), lab_name()
    a.up([manifest(tmp_path, cluster_yaml("vxlan", 2), "a.yaml")])
    b.up([manifest(tmp_path, cluster_yaml("host-gw", 2), "b.yaml")])
    pa = {p["name"]: p for p in a.pods()}
    pb = {p["name"]: p for p in b.pods()}
    assert pa["p0"]["ip"] == pb["p0"]["ip"]  # same addresses, separate networks
    assert from_ns(a.target_netns("default/p0"), pa["p2"]["ip"], 80) == "p2"
    assert from_ns(b.target_netns("default/p0"), pb["p2"]["ip"], 80) == "p2"
    cli = [sys.executable, "-m", "gingham.cli", "lab"]
    r = subprocess.run(cli + ["probe", "--name", a.name, "default/p0", "other/p2", "80", "-o", "json"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["answeredBy"] == "p2"
    r = subprocess.run(cli + ["probe", "--name", a.name, "external", "other/p2", "80", "--timeout", "0.3"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    a.down()
    a.down()
    assert not any(n.startswith(f"gl-{a.name}-") for n in os.listdir("/run/netns"))
    assert not any(n.startswith(f"gl-{a.name}-") for n in os.listdir("/etc/netns"))  # resolv.confs too
    assert not os.path.exists(a.dir)
    assert from_ns(b.target_netns("default/p0"), pb["p2"]["ip"], 80) == "p2"
    with pytest.raises(LabError):
        a.pods()
