"""The lab's ingress: the objects it provides, and Ingresses as the API shows them (with status).

At `lab up` the lab adds, unless the manifests define them: IngressClass `gingham`
(controller gingham.dev/ingress-controller, the default class), and the LoadBalancer Service
`gingham-system/gingham-ingress` (ports 80 and 443, no selector: its endpoints are the nodes,
each running HAProxy; externalTrafficPolicy Local, so backends see the client's address). Its address comes from the Cluster's `loadBalancerPool` like any
LoadBalancer's, allocated after the manifests' own Services.

An Ingress's `status.loadBalancer.ingress` is what the controller would write: the ingress
Service's address for an Ingress of a gingham class; without a pool, every node's address
(the hostNetwork DaemonSet's way: HAProxy listens on :80/:443 of each node). Ingresses of
other classes are left alone, with no status. The lab computes it when it is read, from the
same class rule the agents use.
"""

from __future__ import annotations

from typing import Any

from ..model.ingress import (CLASS, CONTROLLER, DEFAULT_CLASS_ANNOTATION, SERVICE_NAME, SERVICE_NAMESPACE,
                             IngressError, parse_ingress, parse_ingress_class, served_class)
from ..model.objects import ClusterState, Namespace, Object
from ..sources.cache import Cache

INGRESS_CLASS = {
    "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
    "metadata": {"name": CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
    "spec": {"controller": CONTROLLER},
}
INGRESS_SERVICE = {
    "apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE},
    # Local: every node has an endpoint (its own HAProxy), so the node holding the address
    # serves it itself and the backends see the external client's own address
    "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
             "ports": [{"name": "http", "port": 80, "targetPort": 80}, {"name": "https", "port": 443, "targetPort": 443}]},
}


def with_defaults(state: ClusterState) -> ClusterState:
    """The state with the lab's IngressClass and ingress Service, where the manifests left them out."""
    objects = dict(state.objects)
    objects.setdefault(f"IngressClass//{CLASS}", Object("IngressClass", "", CLASS, INGRESS_CLASS))
    objects.setdefault(f"Service/{SERVICE_NAMESPACE}/{SERVICE_NAME}",
                       Object("Service", SERVICE_NAMESPACE, SERVICE_NAME, INGRESS_SERVICE))
    namespaces = dict(state.namespaces)
    namespaces.setdefault(SERVICE_NAMESPACE, Namespace(SERVICE_NAMESPACE))
    return ClusterState(state.cluster, namespaces, dict(state.pods), objects)


def addresses(cache: Cache) -> list[str]:
    """Where external clients reach the ingress: its Service's address, else every node's."""
    svc = cache.services.get(f"{SERVICE_NAMESPACE}/{SERVICE_NAME}")
    if svc is not None and svc.load_balancer_ip:
        return [svc.load_balancer_ip]
    return sorted(n.ip for n in cache.nodes.values())


def ingress_objects(cache: Cache, namespace: str | None) -> list[dict[str, Any]]:
    classes = {}
    for o in cache.objects.values():
        if o.kind == "IngressClass":
            try:
                classes[o.name] = parse_ingress_class(o.name, o.raw)
            except IngressError:
                continue
    ips = addresses(cache)
    out = []
    for key, o in sorted(cache.objects.items()):
        if o.kind != "Ingress" or (namespace and o.namespace != namespace):
            continue
        doc = {k: v for k, v in o.raw.items() if k != "status"}
        try:
            served = served_class(parse_ingress(o.namespace, o.name, o.raw), classes)
        except IngressError:
            served = False
        doc["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]} if served else {}}
        out.append(doc)
    return out


def class_objects(cache: Cache) -> list[dict[str, Any]]:
    return [o.raw for _, o in sorted(cache.objects.items()) if o.kind == "IngressClass"]


def ingress_rows(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """kubectl get ingress's columns."""
    rows = []
    for d in objs:
        spec, meta = d.get("spec") or {}, d.get("metadata") or {}
        hosts = sorted({r.get("host") or "*" for r in spec.get("rules") or []}) or ["*"]
        lb = d["status"]["loadBalancer"].get("ingress", [])
        rows.append({"namespace": meta.get("namespace", "default"), "name": meta.get("name", ""),
                     "class": spec.get("ingressClassName") or "<none>", "hosts": hosts,
                     "address": ",".join(i["ip"] for i in lb) or "-",
                     "ports": "80, 443" if spec.get("tls") else "80"})
    return rows
