"""Pod fields the lab honours as Kubernetes defines them: readinessProbe (tcpSocket, httpGet,
exec, with kubelet's timing) decides Ready, and so the Service's endpoints; and
terminationGracePeriodSeconds decides how long a removed pod keeps running out of them."""

from __future__ import annotations

import os
import time

import pytest

from gingham.lab.cluster import Lab

from .conftest import RUN_ID, probe_from, shared_lab
from ..helpers.lab import manifest

pytestmark = pytest.mark.root
FLAG = f"/tmp/gingham-probe-{RUN_ID}"

CLUSTER = f"""
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {{name: probes}}
spec: {{nodes: 2}}
---
apiVersion: v1
kind: Pod
metadata: {{name: gated, labels: {{app: web}}}}
spec:
  nodeName: node-1
  terminationGracePeriodSeconds: 4
  containers:
  - name: c
    ports: [{{containerPort: 80}}]
    readinessProbe: {{exec: {{command: [test, -e, {FLAG}]}}, periodSeconds: 1, failureThreshold: 2}}
---
apiVersion: v1
kind: Pod
metadata: {{name: healthy, labels: {{app: health}}}}
spec:
  nodeName: node-2
  containers:
  - name: c
    ports: [{{containerPort: 80}}]
    readinessProbe: {{httpGet: {{port: 8081, path: /healthz}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: closed, labels: {{app: closed}}}}
spec:
  nodeName: node-2
  containers:
  - name: c
    ports: [{{containerPort: 80}}]
    readinessProbe: {{tcpSocket: {{port: 81}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec: {{nodeName: node-2, containers: [{{name: c}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{selector: {{app: web}}, ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web-headless}}
spec: {{clusterIP: None, selector: {{app: web}}, ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web-all}}
spec: {{clusterIP: None, publishNotReadyAddresses: true, selector: {{app: web}}, ports: [{{port: 80}}]}}
"""

lab = shared_lab("pf", lambda tmp_path_factory: [manifest(tmp_path_factory.mktemp("pf"), CLUSTER)])



def ready(lab: Lab, name: str) -> bool:
    return next(p for p in lab.pods() if p["name"] == name)["ready"] == "1/1"


def until(check, seconds: float) -> float:
    """How long `check()` took to hold (fails when it never does within `seconds`)."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < seconds, "did not happen in time"
        time.sleep(0.1)
    return time.monotonic() - t0


def through_service(lab: Lab) -> str | None:
    ip = next(s["clusterIP"] for s in lab.services() if s["name"] == "web")
    return probe_from(lab.target_netns("default/client"), ip, 80, timeout=0.5)


def dig(lab: Lab, name: str) -> list[str]:
    import subprocess
    ns = os.path.basename(lab.target_netns("default/client"))
    out = subprocess.run(["ip", "netns", "exec", ns, "dig", "+short", "+time=2", "+tries=1", name],
                         capture_output=True, text=True).stdout
    return sorted(out.split())


def test_an_exec_probe_takes_the_pod_in_and_out_of_its_service_and_dns(lab):
    if os.path.exists(FLAG):
        os.unlink(FLAG)
    gated = next(p["ip"] for p in lab.pods() if p["name"] == "gated")
    assert not ready(lab, "gated") and through_service(lab) is None  # running, but its probe says no
    assert dig(lab, "web-headless.default.svc.cluster.local") == []  # an unready pod is left out of DNS...
    assert dig(lab, "web-all.default.svc.cluster.local") == [gated]  # ...unless publishNotReadyAddresses
    open(FLAG, "w").close()
    try:
        until(lambda: ready(lab, "gated"), 5)
        until(lambda: through_service(lab) == "gated", 3)
        until(lambda: dig(lab, "web-headless.default.svc.cluster.local") == [gated], 3)
    finally:
        os.unlink(FLAG)
    took = until(lambda: not ready(lab, "gated"), 6)  # two failures, a second apart
    assert took >= 0.8
    until(lambda: through_service(lab) is None, 3)
    until(lambda: dig(lab, "web-headless.default.svc.cluster.local") == [], 3)


def test_http_and_tcp_probes(lab):
    until(lambda: ready(lab, "healthy"), 5)  # the workload answers its health port over HTTP
    time.sleep(1.5)
    assert not ready(lab, "closed")          # nothing listens on 81: never ready
    pods = {p["name"]: p for p in lab.pods()}
    assert pods["closed"]["status"] == "Running" and pods["closed"]["ip"]


def test_the_grace_period_is_the_pods_own(lab, tmp_path):
    gated = CLUSTER.split("---")[1]
    t0 = time.monotonic()
    lab.delete([manifest(tmp_path, gated, "gated.yaml")])
    ns = lab.pod_netns("default", "gated")
    until(lambda: not os.path.exists(f"/run/netns/{ns}"), 10)
    assert time.monotonic() - t0 >= 3.5  # terminationGracePeriodSeconds: 4 (the lab's default is 1.5 s)
    lab.apply([manifest(tmp_path, gated, "gated.yaml")])


HOSTNET = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: hostnet}
spec: {nodes: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, labels: {app: hostagent}}
spec: {nodeName: node-1, hostNetwork: true, containers: [{name: c, ports: [{containerPort: 9100}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {nodeName: node-2, containers: [{name: c}]}
---
apiVersion: v1
kind: Service
metadata: {name: hostagent}
spec: {selector: {app: hostagent}, ports: [{port: 80, targetPort: 9100}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec: {podSelector: {}, policyTypes: [Ingress]}
"""


def test_a_host_network_pod_has_its_nodes_address_and_is_not_isolated(lab_name, tmp_path):
    lab = lab_name()
    lab.up([manifest(tmp_path, HOSTNET)])
    pods = {p["name"]: p for p in lab.pods()}
    node1 = next(n["ip"] for n in lab.nodes() if n["name"] == "node-1")
    assert pods["agent"]["ip"] == node1 and pods["agent"]["netns"].endswith("-node-node-1")
    client = lab.target_netns("default/client")
    # a deny-all policy selects every pod of the namespace, but not a hostNetwork one: its traffic is the node's
    assert probe_from(client, node1, 9100) == "agent"
    ip = next(s["clusterIP"] for s in lab.services() if s["name"] == "hostagent")
    assert probe_from(client, ip, 80) == "agent"  # a Service's endpoint at the node's address
    assert probe_from(lab.target_netns("node/node-1"), "127.0.0.1", 9100) == "agent"  # in the node's namespace


LIMITED = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: limits}
spec: {nodes: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: small}
spec:
  containers:
  - name: c
    ports: [{containerPort: 80}]
    resources: {limits: {cpu: 250m, memory: 48Mi}}
"""


def test_limits_put_the_workload_in_a_cgroup_and_the_oom_killer_enforces_them(lab_name, tmp_path):
    import subprocess
    import sys

    lab = lab_name()
    lab.up([manifest(tmp_path, LIMITED)])
    pod = next(p for p in lab.pods() if p["name"] == "small")
    assert pod["limits"] == {"cpu": "250m", "memory": "48Mi"}
    dirs = lab.pod_cgroup("default/small")
    assert dirs
    for d in dirs:
        files = set(os.listdir(d))
        if "memory.max" in files:                  # cgroup v2
            assert open(f"{d}/memory.max").read().strip() == str(48 << 20)
            assert open(f"{d}/cpu.max").read().split() == ["25000", "100000"]
        elif "memory.limit_in_bytes" in files:     # v1
            assert open(f"{d}/memory.limit_in_bytes").read().strip() == str(48 << 20)
        elif "cpu.cfs_quota_us" in files:
            assert open(f"{d}/cpu.cfs_quota_us").read().strip() == "25000"
        assert open(f"{d}/cgroup.procs").read().split(), "the workload runs in it"
    # a process of the pod that goes past the limit is ended by the kernel's OOM killer (kubectl exec's
    # processes count against the container's limit too); the workload itself keeps serving
    r = subprocess.run([sys.executable, "-m", "gingham.cli", "lab", "exec", "default/small", "--name", lab.name,
                        "--", sys.executable, "-c", "b = bytearray(200 << 20); print('survived')"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode in (137, -9) and "survived" not in r.stdout, (r.returncode, r.stdout, r.stderr)
    assert probe_from(lab.target_netns("default/small"), "127.0.0.1", 80) == "small"
    lab.down()
    assert not any(os.path.exists(d) for d in dirs)
