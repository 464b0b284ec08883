"""What `lab get -o json|yaml` prints (Kubernetes objects, by value) and what bash completes."""

from __future__ import annotations

import subprocess

from gingham.cli import build_parser
from gingham.completion import bash
from gingham.lab import kube
from gingham.model.objects import ContainerPort, Pod
from gingham.model.registry import NodeInfo, PodStatus
from gingham.model.services import Service, ServicePort


def test_a_running_pod_as_the_api_shows_it() -> None:
    pod = Pod("shop", "web-0", {"app": "web"}, "node-2", (ContainerPort(80, "TCP", "http"),), "Deployment/web")
    o = kube.pod_object(pod, PodStatus("shop", "web-0", "node-2", "10.244.1.2", True), "192.168.200.12", True)
    assert (o["apiVersion"], o["kind"], o["metadata"]["namespace"], o["spec"]["nodeName"]) == \
        ("v1", "Pod", "shop", "node-2")
    assert o["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    st = o["status"]
    assert (st["phase"], st["podIP"], st["podIPs"], st["hostIP"]) == \
        ("Running", "10.244.1.2", [{"ip": "10.244.1.2"}], "192.168.200.12")
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"


def test_a_pod_on_a_node_without_a_lease_is_not_ready_and_a_pending_one_has_no_ip() -> None:
    pod = Pod("default", "p", {}, "node-1")
    gone = kube.pod_object(pod, PodStatus("default", "p", "node-1", "10.244.0.2", True), "192.168.200.11", False)
    assert {c["type"]: c["status"] for c in gone["status"]["conditions"]}["Ready"] == "False"
    pending = kube.pod_object(pod, None, "192.168.200.11", True)
    assert pending["status"]["phase"] == "Pending" and "podIP" not in pending["status"]


def test_services_and_nodes_as_the_api_shows_them() -> None:
    svc = Service("default", "lb", "LoadBalancer", "10.96.0.12", (ServicePort("", "TCP", 80, 8080, 30001),),
                  {"app": "web"}, external_policy_local=True, health_check_node_port=30002,
                  load_balancer_ip="192.168.200.200")
    o = kube.service_object(svc)
    assert o["spec"]["clusterIP"] == "10.96.0.12" and o["spec"]["ports"] == \
        [{"protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30001}]
    assert (o["spec"]["externalTrafficPolicy"], o["spec"]["healthCheckNodePort"]) == ("Local", 30002)
    assert o["status"] == {"loadBalancer": {"ingress": [{"ip": "192.168.200.200"}]}}
    headless = kube.service_object(Service("default", "h", cluster_ip="None", selector={"a": "b"}))
    assert headless["spec"]["clusterIP"] == "None" and headless["status"] == {"loadBalancer": {}}
    n = kube.node_object(NodeInfo("node-1", "192.168.200.11", "10.244.0.0/24"), True)
    assert n["spec"]["podCIDRs"] == ["10.244.0.0/24"]
    assert {"type": "InternalIP", "address": "192.168.200.11"} in n["status"]["addresses"]
    assert kube.as_list([n])["kind"] == "List"


def complete(*words: str) -> list[str]:
    script = bash(build_parser(), "/nonexistent") + (
        'COMP_WORDS=(%s); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _gingham; echo "${COMPREPLY[*]}"'
        % " ".join(f"'{w}'" for w in words))
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split()


def test_bash_completion_offers_what_the_parser_accepts() -> None:
    assert "lab" in complete("gingham", "")
    assert complete("gingham", "lab", "g") == ["get"]
    assert complete("gingham", "lab", "get", "po") == ["po", "pod", "pods"]
    assert complete("gingham", "lab", "get", "pods", "-o", "") == ["table", "wide", "json", "yaml"]
    assert complete("gingham", "lab", "exec", "x/y", "--", "") == []
