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
import time

from ..ingress.gateway import service_name
from ..model import gateway
from ..model.gateway import parse_gateway
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


GATEWAY_CLASS = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": gateway.CLASS},
    "spec": {"controllerName": gateway.CONTROLLER},
}
GATEWAY_LABEL = "gateway.networking.k8s.io/gateway-name"
GATEWAY_NS_LABEL = "gingham.dev/gateway-namespace"


def with_defaults(state: ClusterState) -> ClusterState:
    """The state with the lab's IngressClass, GatewayClass and ingress Service, where the
    manifests left them out, and the Services of its Gateways."""
    objects = dict(state.objects)
    objects.setdefault(f"IngressClass//{CLASS}", Object("IngressClass", "", CLASS, INGRESS_CLASS))
    objects.setdefault(f"GatewayClass//{gateway.CLASS}", Object("GatewayClass", "", gateway.CLASS, GATEWAY_CLASS))
    objects.setdefault(f"Service/{SERVICE_NAMESPACE}/{SERVICE_NAME}",
                       Object("Service", SERVICE_NAMESPACE, SERVICE_NAME, INGRESS_SERVICE))
    namespaces = dict(state.namespaces)
    namespaces.setdefault(SERVICE_NAMESPACE, Namespace(SERVICE_NAMESPACE))
    return with_gateway_services(ClusterState(state.cluster, namespaces, dict(state.pods), objects))


def with_gateway_services(state: ClusterState) -> ClusterState:
    """Each Gateway's LoadBalancer Service (ingress/gateway.py), as a Gateway controller writes
    one: a port per listener port, externalTrafficPolicy Local. Until the allocator gives it
    node ports its targetPorts are the ports; `pin_gateway_ports` then makes them the node ports."""
    objects = dict(state.objects)
    for o in state.objects.values():
        if o.kind != "Gateway":
            continue
        try:
            gw = parse_gateway(o.namespace, o.name, o.raw)
        except IngressError:
            continue  # refused by the manifest loader before this is reached
        name = service_name(o.namespace, o.name)
        ports = sorted({ln.port for ln in gw.listeners})
        objects[f"Service/{SERVICE_NAMESPACE}/{name}"] = Object("Service", SERVICE_NAMESPACE, name, {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": SERVICE_NAMESPACE,
                         "labels": {GATEWAY_LABEL: o.name, GATEWAY_NS_LABEL: o.namespace}},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                     "ports": [{"name": f"port-{p}", "port": p, "targetPort": p} for p in ports]}})
    return ClusterState(state.cluster, state.namespaces, state.pods, objects)


def pin_gateway_ports(raw: dict[str, Any]) -> dict[str, Any]:
    """A Gateway's Service with each targetPort its node port (unique in the cluster: the port
    the nodes' HAProxy binds for that listener port); other Services as they are."""
    labels = (raw.get("metadata") or {}).get("labels") or {}
    if GATEWAY_LABEL not in labels:
        return raw
    spec = dict(raw["spec"])
    spec["ports"] = [{**p, "targetPort": p.get("nodePort", p["targetPort"])} for p in spec.get("ports", [])]
    return {**raw, "spec": spec}


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


def gateway_objects(cache: Cache, kind: str, namespace: str | None) -> list[dict[str, Any]]:
    """GatewayClasses, Gateways or HTTPRoutes with the status gingham's controller gives them
    (the same decisions the agents compile: ingress/gateway.py)."""
    from ..ingress.gateway import class_status, gateway_status, route_status
    from ..ingress.objects import gateway_world, parse_objects
    objs = parse_objects(cache.objects)
    w = gateway_world(objs, cache.services, {n: ns.labels for n, ns in cache.namespaces.items()})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = []
    for key, o in sorted(cache.objects.items()):
        if o.kind != kind or (namespace and o.namespace != namespace and kind != "GatewayClass"):
            continue
        doc = {k: v for k, v in o.raw.items() if k != "status"}
        generation = int((doc.get("metadata") or {}).get("generation") or 1)
        if kind == "GatewayClass":
            doc["status"] = class_status(objs.gateway_classes.get(o.name, ""), generation, now)
        elif kind == "Gateway":
            gkey = f"{o.namespace}/{o.name}"
            svc = cache.services.get(f"{SERVICE_NAMESPACE}/{service_name(o.namespace, o.name)}")
            doc["status"] = gateway_status(w, gkey, svc.load_balancer_ip if svc else "", generation, now) \
                if gkey in w.gateways else {}
        else:
            doc["status"] = route_status(w, f"{o.namespace}/{o.name}", generation, now)
        out.append(doc)
    return out


def gateway_rows(kind: str, objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """kubectl get's columns for gatewayclasses, gateways and httproutes."""
    rows = []
    for d in objs:
        meta, spec, status = d.get("metadata") or {}, d.get("spec") or {}, d.get("status") or {}
        conds = {c["type"]: c["status"] for c in status.get("conditions", [])}
        if kind == "gatewayclasses":
            rows.append({"name": meta.get("name"), "controller": spec.get("controllerName", ""),
                         "accepted": conds.get("Accepted", "Unknown")})
        elif kind == "gateways":
            rows.append({"namespace": meta.get("namespace", "default"), "name": meta.get("name"),
                         "class": spec.get("gatewayClassName", ""),
                         "address": ",".join(a["value"] for a in status.get("addresses", [])) or "-",
                         "programmed": conds.get("Programmed", "Unknown")})
        else:
            parents = status.get("parents", [])
            rows.append({"namespace": meta.get("namespace", "default"), "name": meta.get("name"),
                         "hostnames": spec.get("hostnames") or ["*"],
                         "accepted": ",".join(next((c["status"] for c in p["conditions"] if c["type"] == "Accepted"),
                                                   "?") for p in parents) or "-"})
    return rows
