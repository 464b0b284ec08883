"""The lab's objects as the Kubernetes API shows them, for `lab get -o json|yaml` (pure).

kubectl prints a `kind: List` of full objects; so does the lab, from what the datastore
holds: a Pod's spec and its status as its node reports it (phase, podIP, podIPs, hostIP,
conditions), a Node with its pod CIDR and InternalIP, a Service as the API server would
return it after allocation (clusterIP, nodePorts, status.loadBalancer), and the
EndpointSlices as the controller wrote them.
"""

from __future__ import annotations

from typing import Any

from ..model.objects import Pod
from ..model.registry import NodeInfo, PodStatus, encode_pod
from ..model.services import Service


def as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}


def _condition(kind: str, ok: bool) -> dict[str, str]:
    return {"type": kind, "status": "True" if ok else "False"}


def pod_object(pod: Pod, status: PodStatus | None, host_ip: str, node_alive: bool) -> dict[str, Any]:
    """The Pod as the datastore holds it (model/registry.py writes its metadata and spec), with
    the status its node reports."""
    here = status is not None and status.node == pod.node_name
    ip = status.ip if status is not None and here else ""
    ready = bool(here and status is not None and status.ready and node_alive)
    out = encode_pod(pod)
    for ref in out["metadata"].get("ownerReferences", []):
        ref["apiVersion"] = "apps/v1"
    out["status"] = {"phase": "Running" if ip else "Pending",
                     "conditions": [_condition("PodScheduled", bool(pod.node_name)), _condition("Initialized", bool(ip)),
                                    _condition("ContainersReady", ready), _condition("Ready", ready)]}
    if ip:
        out["status"].update({"podIP": ip, "podIPs": [{"ip": ip}], "hostIP": host_ip, "hostIPs": [{"ip": host_ip}]})
    if status is not None and status.terminating:
        out["metadata"]["deletionGracePeriodSeconds"] = 30
    return out


def node_object(info: NodeInfo, ready: bool) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": info.name, "labels": {"kubernetes.io/hostname": info.name,
                                                        "kubernetes.io/os": "linux"}},
            "spec": {"podCIDR": info.pod_cidr, "podCIDRs": [info.pod_cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": info.ip},
                                     {"type": "Hostname", "address": info.name}],
                       "conditions": [_condition("Ready", ready)]}}


def service_object(svc: Service) -> dict[str, Any]:
    """A Service as the API server returns it once allocated (the model holds what it used)."""
    ports = []
    for p in svc.ports:
        port: dict[str, Any] = {"protocol": p.protocol, "port": p.port, "targetPort": p.target_port}
        if p.name:
            port["name"] = p.name
        if p.node_port:
            port["nodePort"] = p.node_port
        ports.append(port)
    spec: dict[str, Any] = {"type": svc.type, "ports": ports, "sessionAffinity": "ClientIP" if svc.session_affinity
                            else "None", "internalTrafficPolicy": "Local" if svc.internal_policy_local else "Cluster"}
    if svc.type == "ExternalName":
        spec = {"type": svc.type, "externalName": svc.external_name, **({"ports": ports} if ports else {})}
    else:
        spec["clusterIP"] = svc.cluster_ip or "None"
        spec["clusterIPs"] = [svc.cluster_ip or "None"]
    if svc.selector is not None:
        spec["selector"] = dict(svc.selector)
    if svc.session_affinity:
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": svc.affinity_timeout}}
    if svc.external_ips:
        spec["externalIPs"] = list(svc.external_ips)
    if svc.type in ("NodePort", "LoadBalancer"):
        spec["externalTrafficPolicy"] = "Local" if svc.external_policy_local else "Cluster"
    if svc.health_check_node_port:
        spec["healthCheckNodePort"] = svc.health_check_node_port
    if svc.lb_source_ranges:
        spec["loadBalancerSourceRanges"] = list(svc.lb_source_ranges)
    if svc.publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    lb = {"ingress": [{"ip": svc.load_balancer_ip}]} if svc.type == "LoadBalancer" and svc.load_balancer_ip else {}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc.name, "namespace": svc.namespace},
            "spec": spec, "status": {"loadBalancer": lb}}
