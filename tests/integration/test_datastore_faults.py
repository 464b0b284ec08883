"""The control plane under faults, in labs: etcd down, a member lost, an agent killed,
a compaction while an agent is away, and keys holding garbage."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from gingham.kernel import netns
from gingham.kernel.links import Netlink
from gingham.lab.cluster import Lab
from gingham.model import registry as reg

from .conftest import slice_of
from ..helpers.lab import from_ns, manifest

pytestmark = pytest.mark.root

CLUSTER = """
    apiVersion: gingham.dev/v1alpha1
    kind: Cluster
    metadata: {name: f}
    spec: {nodes: 2, overlay: vxlan}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: a}
    spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 80}]}]}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: b}
    spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 80}]}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec: {selector: {app: web}, ports: [{port: 80}]}
    """


def service(name: str, ip: str) -> str:
    return f"""
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}}}
        spec: {{clusterIP: {ip}, selector: {{app: web}}, ports: [{{port: 80}}]}}
        """


class Echo:
    """An established TCP connection from one pod to another, echoing bytes."""

    def __init__(self, lab: Lab, server: str, client: str, ip: str, port: int = 9300) -> None:
        with netns.entered(lab.target_netns(server)):
            self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("0.0.0.0", port))
        self.srv.listen(1)
        with netns.entered(lab.target_netns(client)):
            self.cli = socket.create_connection((ip, port), timeout=5)
        self.conn, _ = self.srv.accept()
        self.conn.settimeout(10)

    def ok(self) -> bool:
        self.cli.sendall(b"x")
        return self.conn.recv(1) == b"x"

    def close(self) -> None:
        for s in (self.cli, self.conn, self.srv):
            s.close()


def pod_ips(lab: Lab) -> dict[str, str]:
    return {f"{p['namespace']}/{p['name']}": p["ip"] for p in lab.pods()}


def test_with_etcd_down_the_network_keeps_working_and_catches_up_when_it_is_back(lab_name, tmp_path):
    lab = lab_name()
    lab.up([manifest(tmp_path, CLUSTER)])
    ips = pod_ips(lab)
    cip = next(s["clusterIP"] for s in lab.services() if s["name"] == "web")
    a, b = lab.target_netns("default/a"), lab.target_netns("default/b")
    echo = Echo(lab, "default/b", "default/a", ips["default/b"])
    try:
        lab.stop_member(0)
        for cmd in (["get", "pods"], ["apply", "-f", manifest(tmp_path, service("down", "10.96.0.206"), "down.yaml")]):
            r = subprocess.run([sys.executable, "-m", "gingham.cli", "lab", *cmd, "--name", lab.name],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 1 and "datastore does not answer" in r.stderr and "Traceback" not in r.stderr, r.stderr
        deadline = time.monotonic() + 10
        rounds = 0
        while time.monotonic() < deadline:  # established and new connections, pod to pod and to a Service
            assert echo.ok()
            assert from_ns(a, ips["default/b"], 80) == "b"
            assert from_ns(b, cip, 80) in {"web-0", "web-1"}
            rounds += 1
            time.sleep(0.3)
        assert rounds > 10
        lab.start_member(0)
        lab.store.etcd.timeout = 10
        t0 = time.monotonic()
        while True:  # the member answers again
            try:
                lab.revision()
                break
            except Exception:
                assert time.monotonic() - t0 < 20
                time.sleep(0.1)
        time.sleep(1.0)  # the agents' watches and leases come back within their 1 s backoff
        t0 = time.monotonic()
        lab.apply([manifest(tmp_path, service("after", "10.96.0.200"), "after.yaml")])
        assert time.monotonic() - t0 < 1.0, "a change after etcd came back took more than a second"
        for src in (a, b):
            assert from_ns(src, "10.96.0.200", 80) in {"web-0", "web-1"}
        assert echo.ok()
    finally:
        echo.close()


def test_three_members_one_killed_writes_go_on_and_agents_keep_watching(lab_name, tmp_path):
    lab = lab_name()
    lab.up([manifest(tmp_path, CLUSTER)], etcd_members=3)
    assert len(lab.meta()["etcd"]) == 3
    lab.stop_member(0)  # the first endpoint: every client starts there
    lab.apply([manifest(tmp_path, service("more", "10.96.0.201"), "more.yaml")])
    for src in (lab.target_netns("default/a"), lab.target_netns("default/b")):
        assert from_ns(src, "10.96.0.201", 80) in {"web-0", "web-1"}
    assert {n["status"] for n in lab.nodes()} == {"Ready"}


def routes_in(lab: Lab, node: str) -> set[str]:
    with netns.entered(lab.target_netns(f"node/{node}")), Netlink() as nl:
        return {r["dst"] for r in nl.routes()}


def test_a_killed_agents_node_goes_after_its_lease_and_comes_back_adopting_its_pods(lab_name, tmp_path):
    lab = lab_name()
    lab.up([manifest(tmp_path, CLUSTER)])
    cidr2 = next(n["podCIDR"] for n in lab.nodes() if n["name"] == "node-2")
    assert cidr2 in routes_in(lab, "node-1")
    before = pod_ips(lab)
    same = [k for k, p in {f"{p['namespace']}/{p['name']}": p for p in lab.pods()}.items() if p["node"] == "node-2"]
    local = Echo(lab, same[0], same[1], before[same[0]], 9301)  # two pods of node-2 talking
    try:
        os.kill(int(lab.meta()["agents"]["node-2"]), signal.SIGKILL)
        t0 = time.monotonic()
        while cidr2 in routes_in(lab, "node-1"):
            assert time.monotonic() - t0 < reg.LEASE_TTL + 3, "node-1 kept the route of a node without a lease"
            time.sleep(0.1)
        assert time.monotonic() - t0 > reg.LEASE_TTL - 1.5  # not before the lease could lapse
        assert "node-2" not in lab.cache().leases
        assert local.ok()
        lab.restart_agent("node-2")
        lab.rewrite(30)
        assert cidr2 in routes_in(lab, "node-1")
        assert pod_ips(lab) == before and local.ok()
        assert from_ns(lab.target_netns("default/a"), before["default/b"], 80) == "b"
    finally:
        local.close()


def test_an_agent_back_after_a_compaction_lists_again_and_converges(lab_name, tmp_path):
    lab = lab_name()
    lab.up([manifest(tmp_path, CLUSTER + "---\n" + service("gone", "10.96.0.202"))])
    os.kill(int(lab.meta()["agents"]["node-2"]), signal.SIGKILL)
    lab._change([manifest(tmp_path, service("gone", "10.96.0.202"), "gone.yaml")], delete=True)
    lab._change([manifest(tmp_path, service("new", "10.96.0.203"), "new.yaml")], delete=False)
    etcd = lab.store.etcd
    etcd.compact(etcd.revision())
    lab.restart_agent("node-2")
    lab.rewrite(30)
    b = lab.target_netns("default/b")
    assert from_ns(b, "10.96.0.203", 80) in {"web-0", "web-1"}
    assert from_ns(b, "10.96.0.202", 80, timeout=0.5) is None


def test_a_key_holding_garbage_is_skipped_and_the_rest_is_served(lab_name, tmp_path):
    lab = lab_name()
    lab.up([manifest(tmp_path, CLUSTER)])
    etcd = lab.store.etcd
    etcd.put(reg.object_key("Service", "default", "junk"), b"{not json")
    etcd.put(reg.object_key("Service", "default", "bad-ip"), reg.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "bad-ip"},
        "spec": {"clusterIP": "172.16.0.1", "ports": [{"port": 80}]}}))
    lab.apply([manifest(tmp_path, service("fine", "10.96.0.204"), "fine.yaml")])
    assert from_ns(lab.target_netns("default/a"), "10.96.0.204", 80) in {"web-0", "web-1"}
    for node in ("node-1", "node-2"):
        log = open(os.path.join(lab.node_dir(node), "agent.log")).read()
        assert "/registry/services/specs/default/junk: not JSON" in log
        assert "/registry/services/specs/default/bad-ip" in log and "service range" in log


def test_endpoint_slices_are_written_by_one_agent_and_another_takes_over(lab_name, tmp_path):
    lab = lab_name()
    lab.up([manifest(tmp_path, CLUSTER)])
    web = slice_of(lab, "web")
    assert web["service"] == "web" and sorted(e["pod"] for e in web["endpoints"]) == ["default/web-0", "default/web-1"]
    etcd = lab.store.etcd
    leader = etcd.get(reg.SLICE_LEADER).value.decode()  # type: ignore[union-attr]
    other = "node-2" if leader == "node-1" else "node-1"
    os.kill(int(lab.meta()["agents"][leader]), signal.SIGKILL)
    t0 = time.monotonic()
    while (kv := etcd.get(reg.SLICE_LEADER)) is None or kv.value.decode() != other:
        assert time.monotonic() - t0 < reg.LEASE_TTL + 5, "nobody took the EndpointSlice controller over"
        time.sleep(0.1)
    lab._change([manifest(tmp_path, service("more", "10.96.0.205"), "more.yaml")], delete=False)
    while not any(s["name"] == "more" for s in lab.endpointslices()):
        assert time.monotonic() - t0 < reg.LEASE_TTL + 10, "the new holder did not write the new Service's slice"
        time.sleep(0.1)
    more = next(s for s in lab.endpointslices() if s["name"] == "more")
    assert {e["pod"] for e in more["endpoints"]} == {"default/web-0", "default/web-1"}
