"""Services in a running lab, with real connections: every kind, policy and failure mode."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest

from gingham.kernel import netns
from gingham.lab.cluster import Lab, LabError
from gingham.services.compile import TABLE

from .conftest import overlay_is, shared_lab, slice_of
from ..helpers.lab import PeerServer, from_ns, manifest

CLUSTER = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: svc}
spec: {nodes: 3, overlay: vxlan, loadBalancerPool: 192.168.200.200-192.168.200.203}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: w, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 7}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: solo, labels: {app: solo}}
spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}, {name: dns, port: 53, targetPort: dns, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: brief}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 2}}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  selector: {app: nothing-has-this}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: solo}
spec:
  type: NodePort
  selector: {app: solo}
  ports: [{port: 80, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: solo-local}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: solo}
  ports: [{port: 9000, targetPort: 9000, nodePort: 30900}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: solo-ext}
spec:
  selector: {app: solo}
  externalIPs: [192.168.200.150]
  ports: [{port: 8080, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec:
  selector: {app: web}
  internalTrafficPolicy: Local
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: fenced}
spec:
  type: LoadBalancer
  loadBalancerSourceRanges: [192.168.200.11/32]
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""


lab = shared_lab("s", lambda tmp_path_factory: [manifest(tmp_path_factory.mktemp("svc"), CLUSTER)])



def svc_info(lab: Lab, name: str) -> dict:
    return next(s for s in lab.services() if s["name"] == name)


def connect(ns: str, ip: str, port: int, timeout: float = 2.0) -> tuple[str, float]:
    """('refused' | 'timeout' | 'ok', seconds) for a TCP connect from inside `ns`."""
    with netns.entered(ns):
        s = socket.socket()
    s.settimeout(timeout)
    t = time.monotonic()
    try:
        s.connect((ip, port))
        return "ok", time.monotonic() - t
    except ConnectionRefusedError:
        return "refused", time.monotonic() - t
    except OSError as e:
        return ("timeout" if isinstance(e, socket.timeout) or e.errno in (errno.ETIMEDOUT, errno.EHOSTUNREACH)
                else f"error {e}"), time.monotonic() - t
    finally:
        s.close()


def answers(lab: Lab, src: str, ip: str, port: int, n: int = 45, proto: str = "TCP") -> Counter:
    ns = lab.target_netns(src)
    return Counter(from_ns(ns, ip, port, proto) for _ in range(n))


def test_cluster_ip_balances_over_ready_endpoints_tcp_and_udp(lab):
    cip = svc_info(lab, "web")["clusterIP"]
    assert cip.startswith("10.96.")
    assert set(answers(lab, "default/client", cip, 80)) == {"web-0", "web-1", "web-2"}
    assert set(answers(lab, "default/client", cip, 53, proto="UDP")) == {"web-0", "web-1", "web-2"}
    assert set(answers(lab, "node/node-3", cip, 80, 30)) <= {"web-0", "web-1", "web-2"}  # from a node too
    assert None not in answers(lab, "node/node-3", cip, 80, 10)
    eps = slice_of(lab, "web")
    assert sorted(e["pod"] for e in eps["endpoints"]) == ["default/web-0", "default/web-1", "default/web-2"]
    assert all("http:8080/TCP" in e["ports"] and "dns:5353/UDP" in e["ports"] for e in eps["endpoints"])


def test_session_affinity_sticks_to_one_endpoint(lab):
    cip = svc_info(lab, "sticky")["clusterIP"]
    got = answers(lab, "default/client", cip, 80, 20)
    assert len(got) == 1 and None not in got


def test_no_endpoints_rejects_at_once_and_headless_has_no_vip(lab):
    cip = svc_info(lab, "nobody")["clusterIP"]
    result, seconds = connect(lab.target_netns("default/client"), cip, 80)
    assert result == "refused" and seconds < 0.5
    assert svc_info(lab, "headless")["clusterIP"] == "None"
    result, _ = connect(lab.target_netns("default/client"), svc_info(lab, "web")["clusterIP"], 81, 1)
    assert result == "refused"  # a port the Service does not have


def test_hairpin_a_pod_reaches_itself_through_its_service(lab):
    cip = svc_info(lab, "solo")["clusterIP"]
    assert from_ns(lab.target_netns("default/solo"), cip, 80) == "solo"


def test_nodeport_on_every_node_and_load_balancer_from_outside(lab):
    ext = lab.target_netns("external")
    for node in ("node-1", "node-2", "node-3"):
        assert from_ns(ext, lab.resolve(f"node/{node}"), 30080) == "solo"
    lb = svc_info(lab, "web-lb")["externalIP"]
    assert lb.startswith("192.168.200.20")
    assert set(answers(lab, "external", lb, 80, 30)) == {"web-0", "web-1", "web-2"}


def test_load_balancer_source_ranges(lab):
    lb = svc_info(lab, "fenced")["externalIP"]
    assert from_ns(lab.target_netns("external"), lb, 80, timeout=0.7) is None       # 192.168.200.100: not allowed
    assert from_ns(lab.target_netns("node/node-1"), lb, 80) in {"web-0", "web-1", "web-2"}  # 192.168.200.11: allowed


def test_external_traffic_policy_local_keeps_the_client_address(lab):
    solo_ns = lab.target_netns("default/solo")
    srv = PeerServer(solo_ns, 9000)
    try:
        ext = lab.target_netns("external")
        assert connect(ext, lab.resolve("node/node-2"), 30900)[0] == "ok"      # node-2 has the endpoint
        assert srv.last_peer() == "192.168.200.100"                             # ...and the client is seen as itself
        assert connect(ext, lab.resolve("node/node-1"), 30900, 0.7)[0] == "timeout"  # no local endpoint: dropped
        info = svc_info(lab, "solo-local")
        assert connect(ext, info["externalIP"], 9000)[0] == "ok"
    finally:
        srv.close()
    state, _ = lab.state()
    raw = state.objects["Service/default/solo-local"].raw
    port = raw["spec"]["healthCheckNodePort"]
    with netns.entered(lab.target_netns("external")):
        body = json.loads(urllib.request.urlopen(f"http://192.168.200.12:{port}/", timeout=2).read())
        assert body["localEndpoints"] == 1 and body["service"] == {"namespace": "default", "name": "solo-local"}
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://192.168.200.11:{port}/", timeout=2)
        assert e.value.code == 503


def test_endpoint_changes_while_traffic_flows(lab, tmp_path):
    cip = svc_info(lab, "web")["clusterIP"]
    stop, results = threading.Event(), []
    client = lab.target_netns("default/client")

    def traffic() -> None:
        while not stop.is_set():
            results.append(from_ns(client, cip, 80, timeout=1))

    t = threading.Thread(target=traffic)
    t.start()
    try:
        scale = CLUSTER.split("---")[1].replace("replicas: 3", "replicas: 2")
        lab.apply([manifest(tmp_path, scale, "scale.yaml")])
        time.sleep(0.5)
        assert set(answers(lab, "default/client", cip, 80, 30)) == {"web-0", "web-1"}
        lab.apply([manifest(tmp_path, CLUSTER.split("---")[1], "back.yaml")])
    finally:
        stop.set()
        t.join(5)
    assert len(results) > 10
    assert results.count(None) <= 1  # at most the connection in flight to the pod that went away


@pytest.mark.skipif(overlay_is("bgp"), reason="MetalLB's L2 failover; on bgp every node announces (test_bgp.py)")
def test_load_balancer_fails_over_when_its_node_goes_away(lab):
    lb = svc_info(lab, "web-lb")["externalIP"]
    holder = next(n for n in ("node-1", "node-2", "node-3") if lb in lab.status(n).get("loadBalancerIPs", []))
    pid = int(lab.meta()["agents"][holder])
    os.kill(pid, signal.SIGSTOP)  # the agent stops answering; its node still exists
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            others = [n for n in ("node-1", "node-2", "node-3")
                      if n != holder and lb in lab.status(n).get("loadBalancerIPs", [])]
            if others:
                break
            time.sleep(0.2)
        assert others, "no other node took the LoadBalancer address"
        with netns.entered(lab.target_netns(f"node/{holder}")):  # what a dead node's kernel would have lost
            os.system(f"ip addr del {lb}/32 dev eth0 2>/dev/null")
        assert from_ns(lab.target_netns("external"), lb, 80) in {"web-0", "web-1", "web-2"}
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_bad_service_is_refused_and_the_rules_stay(lab, tmp_path):
    rev = lab.revision()
    dup = manifest(tmp_path, """
        apiVersion: v1
        kind: Service
        metadata: {name: clash}
        spec: {type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 30080}]}
        """, "dup.yaml")
    with pytest.raises(LabError, match="30080 is already used by Service default/solo"):
        lab.apply([dup])
    assert lab.revision() == rev
    assert from_ns(lab.target_netns("external"), lab.resolve("node/node-1"), 30080) == "solo"


def test_external_ips_and_internal_traffic_policy_local(lab):
    ext = lab.target_netns("external")
    with netns.entered(ext):  # the admin routes an external IP to a node; kube-proxy only answers it
        os.system("ip route replace 192.168.200.150/32 via 192.168.200.11")
    assert from_ns(ext, "192.168.200.150", 8080) == "solo"
    cip = svc_info(lab, "web-local")["clusterIP"]
    on_node1 = {p["name"] for p in lab.pods() if p["node"] == "node-1" and p["name"].startswith("web-")}
    assert set(answers(lab, "default/client", cip, 80, 20)) == on_node1  # only the client's own node


def affinity_entries(lab: Lab, node: str, service: str) -> list[str]:
    ns = os.path.basename(lab.target_netns(f"node/{node}"))
    out = os.popen(f"ip netns exec {ns} nft -j list sets table ip {TABLE}").read()
    sets = [x["set"] for x in json.loads(out)["nftables"] if "set" in x and f"/{service}/" in x["set"]["name"]]
    return [name for s in sets for name in [s["name"]] * len(s.get("elem", []))]


def test_session_affinity_expires_after_its_timeout(lab):
    cip = svc_info(lab, "brief")["clusterIP"]
    got = answers(lab, "default/client", cip, 80, 8)
    assert len(got) == 1 and None not in got
    assert len(affinity_entries(lab, "node-1", "brief")) == 1  # the client's address, in one endpoint's set
    time.sleep(3)
    assert affinity_entries(lab, "node-1", "brief") == []      # gone after timeoutSeconds: 2


def test_stale_udp_conntrack_entries_go_with_their_endpoint(lab, tmp_path):
    cip = svc_info(lab, "web")["clusterIP"]
    node1 = os.path.basename(lab.target_netns("node/node-1"))
    for _ in range(30):  # new source ports: (2/3)^30 that none reaches web-2
        from_ns(lab.target_netns("default/client"), cip, 53, "UDP")
    web2 = next(p["ip"] for p in lab.pods() if p["name"] == "web-2")

    def entries() -> int:
        out = os.popen(f"ip netns exec {node1} conntrack -L -p udp --orig-dst {cip} --reply-src {web2} 2>/dev/null").read()
        return len([ln for ln in out.splitlines() if "udp" in ln])
    assert entries() > 0
    scale = CLUSTER.split("---")[1].replace("replicas: 3", "replicas: 2")
    lab.apply([manifest(tmp_path, scale, "scale.yaml")])
    try:
        deadline = time.monotonic() + 5
        while entries() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert entries() == 0
    finally:
        lab.apply([manifest(tmp_path, CLUSTER.split("---")[1], "back.yaml")])


def test_deleting_a_service_removes_its_rules(lab, tmp_path):
    body = """
        apiVersion: v1
        kind: Service
        metadata: {name: gone-soon}
        spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
        """
    path = manifest(tmp_path, body, "gone.yaml")
    lab.apply([path])
    cip = svc_info(lab, "gone-soon")["clusterIP"]
    assert from_ns(lab.target_netns("default/client"), cip, 80) in {"web-0", "web-1", "web-2"}
    lab.delete([path])
    result, _ = connect(lab.target_netns("default/client"), cip, 80, 1)
    assert result != "ok"  # an unallocated ClusterIP is dropped
    assert all(n["status"] == "Ready" for n in lab.nodes())  # no agent failed on the removal


HOST_GW = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: hgw}
spec: {nodes: 2, overlay: host-gw}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: w, ports: [{containerPort: 8080}, {containerPort: 5353, protocol: UDP}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080},
          {name: dns, port: 53, targetPort: 5353, protocol: UDP, nodePort: 30053}]
"""


def test_services_on_host_gw_across_nodes(lab_name, tmp_path):
    """The same Service rules on the other overlay: endpoints on both nodes, TCP and UDP."""
    lab = lab_name()
    lab.up([manifest(tmp_path, HOST_GW)])
    nodes = {p["name"]: p["node"] for p in lab.pods()}
    assert set(nodes.values()) == {"node-1", "node-2"}
    cip = svc_info(lab, "web")["clusterIP"]
    assert set(answers(lab, "default/web-0", cip, 80)) == {"web-0", "web-1", "web-2"}
    assert set(answers(lab, "default/web-0", cip, 53, proto="UDP")) == {"web-0", "web-1", "web-2"}
    for node in ("node-1", "node-2"):
        assert set(answers(lab, "external", lab.resolve(f"node/{node}"), 30080, 30)) == {"web-0", "web-1", "web-2"}


def test_lab_trace_tells_what_the_probes_find(lab):
    """`gingham lab trace` reads a node's live table; its endpoints are the pods that answer."""
    import subprocess
    import sys

    from gingham.lab.trace import describe, trace_connection
    cip = svc_info(lab, "web")["clusterIP"]
    r = trace_connection(lab, "default/client", "web", 80, "TCP")  # by DNS name, as the pod would ask
    assert (r["address"], r["verdict"], r["masquerade"]) == (cip, "ACCEPT", False)
    assert {e["owner"] for e in r["endpoints"]} == {f"default/{p}" for p in answers(lab, "default/client", cip, 80)}
    assert "DNAT to one of 3" in describe(r)
    assert trace_connection(lab, "default/client", svc_info(lab, "nobody")["clusterIP"], 80, "TCP")["verdict"] \
        == "REJECT"
    assert trace_connection(lab, "external", svc_info(lab, "fenced")["externalIP"], 80, "TCP")["verdict"] == "DROP"
    local = trace_connection(lab, "external", "node/node-2", 30900, "TCP")  # ETP Local, solo runs on node-2
    assert [e["owner"] for e in local["endpoints"]] == ["default/solo"] and not local["masquerade"]
    out = subprocess.run([sys.executable, "-m", "gingham.cli", "lab", "trace", "--name", lab.name, "-o", "json",
                          "node/node-3", cip, "80"], capture_output=True, text=True, check=True).stdout
    from_node = json.loads(out)
    assert from_node["node"] == "node-3" and from_node["masquerade"] and len(from_node["endpoints"]) == 3


def test_agent_metrics_on_the_kube_proxy_port(lab):
    """Each agent serves Prometheus metrics on its node's address at :10249."""
    from prometheus_client.parser import text_string_to_metric_families
    node_ip = lab.resolve("node/node-2")
    with netns.entered(lab.target_netns("external")):
        text = urllib.request.urlopen(f"http://{node_ip}:10249/metrics", timeout=3).read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    on_node = [p for p in lab.pods() if p["node"] == "node-2"]
    served = [s for s in lab.services() if s["clusterIP"] not in ("None", "")]
    assert samples[("gingham_pods", (("phase", "running"),))] == len(on_node)
    assert samples[("gingham_cni_requests_total", (("command", "ADD"), ("plugin", "bridge"), ("result", "ok")))] \
        >= len(on_node)
    assert samples[("gingham_proxy_services", ())] == len(served)
    assert samples[("gingham_proxy_sync_duration_seconds_count", (("kind", "full"),))] >= 1
    assert samples[("gingham_proxy_sync_last_timestamp_seconds", ())] > time.time() - 60
