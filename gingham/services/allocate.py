"""The API server's part for Services: ClusterIPs, NodePorts, health-check ports, LB addresses.

Pure. Allocated values are written into the Service objects (as the API server persists
them) and kept across updates; fixed values are checked for conflicts. Allocation is
lowest-free rather than random, so a lab is reproducible: ClusterIPs from .11 of the
service range (.1 and .10 stay free for `kubernetes` and `kube-dns`), NodePorts from 30000.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from ..model.manifest import lb_pool_addresses
from ..model.objects import ClusterState, Object
from ..model.services import NODE_PORT_RANGE, Service, parse_service


class AllocationError(ValueError):
    def __init__(self, obj: str, field: str, msg: str) -> None:
        super().__init__(f"Service {obj}: {field}: {msg}")
        self.obj, self.field, self.msg = obj, field, msg


def services_of(state: ClusterState) -> list[Service]:
    return [parse_service(o.namespace, o.name, o.raw, state.cluster.service_cidr)
            for o in state.objects.values() if o.kind == "Service"]


def allocate(state: ClusterState, previous: ClusterState | None = None) -> ClusterState:
    """Fills in every Service's clusterIP, nodePorts, healthCheckNodePort and LB address."""
    prev = {o.key: o.raw for o in (previous.objects.values() if previous else []) if o.kind == "Service"}
    objs = {k: o for k, o in state.objects.items() if o.kind == "Service"}
    raws: dict[str, dict[str, Any]] = {}
    # Services that exist already hold their values; a new one that asks for a taken value is the one refused.
    for key, o in sorted(objs.items(), key=lambda kv: (kv[0] not in prev, kv[0])):
        raw = copy.deepcopy(o.raw)
        old = prev.get(key)
        spec = raw.setdefault("spec", {})
        if old is not None:  # an update keeps what was allocated, as the API server does
            ospec = old.get("spec") or {}
            if not spec.get("clusterIP") and ospec.get("clusterIP"):
                spec["clusterIP"] = ospec["clusterIP"]
            oports = {(p.get("name", ""), p.get("protocol", "TCP")): p for p in ospec.get("ports") or []}
            for p in spec.get("ports") or []:
                op = oports.get((p.get("name", ""), p.get("protocol", "TCP")))
                if op and op.get("nodePort") and not p.get("nodePort"):
                    p["nodePort"] = op["nodePort"]
            if ospec.get("healthCheckNodePort") and not spec.get("healthCheckNodePort"):
                spec["healthCheckNodePort"] = ospec["healthCheckNodePort"]
            if old.get("status") and not raw.get("status"):
                raw["status"] = copy.deepcopy(old["status"])
        raws[key] = raw

    cidr = ipaddress.ip_network(state.cluster.service_cidr)
    used_ips: dict[str, str] = {state.cluster.dns_ip: "kube-system/kube-dns"}
    used_ports: dict[int, str] = {}
    for key, raw in raws.items():  # fixed values first, so they win over allocation
        name = key.split("/", 1)[1]
        spec = raw["spec"]
        ip = spec.get("clusterIP")
        if ip and ip != "None":
            if ip in used_ips:
                raise AllocationError(name, "spec.clusterIP", f"{ip} is already used by Service {used_ips[ip]}")
            used_ips[ip] = name
        for i, p in enumerate(spec.get("ports") or []):
            for field, val in ((f"spec.ports[{i}].nodePort", p.get("nodePort")),):
                if val:
                    if val in used_ports:
                        raise AllocationError(name, field, f"NodePort {val} is already used by Service {used_ports[val]}")
                    used_ports[val] = name
        hc = spec.get("healthCheckNodePort")
        if hc:
            if hc in used_ports:
                raise AllocationError(name, "spec.healthCheckNodePort", f"{hc} is already used by {used_ports[hc]}")
            used_ports[hc] = name

    def next_ip() -> str:
        for i in range(11, cidr.num_addresses - 1):
            cand = str(cidr.network_address + i)
            if cand not in used_ips:
                return cand
        raise AllocationError("-", "spec.clusterIP", f"the service range {cidr} is full")

    def next_port(owner: str) -> int:
        for port in range(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1] + 1):
            if port not in used_ports:
                used_ports[port] = owner
                return port
        raise AllocationError(owner, "nodePort", "the NodePort range is full")

    pool = lb_pool_addresses(state.cluster.load_balancer_pool) if state.cluster.load_balancer_pool else []
    used_lb = {((r.get("status") or {}).get("loadBalancer") or {}).get("ingress", [{}])[0].get("ip")
               for r in raws.values() if (r.get("status") or {}).get("loadBalancer")}
    for key, raw in raws.items():
        name = key.split("/", 1)[1]
        spec = raw["spec"]
        typ = spec.get("type", "ClusterIP")
        if typ == "ExternalName":
            continue
        if not spec.get("clusterIP"):
            spec["clusterIP"] = next_ip()
            used_ips[spec["clusterIP"]] = name
        if typ in ("NodePort", "LoadBalancer"):
            for p in spec.get("ports") or []:
                if not p.get("nodePort"):
                    p["nodePort"] = next_port(name)
        if typ == "LoadBalancer":
            if spec.get("externalTrafficPolicy") == "Local" and not spec.get("healthCheckNodePort"):
                spec["healthCheckNodePort"] = next_port(name)
            ingress = ((raw.get("status") or {}).get("loadBalancer") or {}).get("ingress")
            if not ingress:
                want = spec.get("loadBalancerIP")
                if want and want not in pool:
                    raise AllocationError(name, "spec.loadBalancerIP", f"{want} is not in the pool "
                                                                         f"{state.cluster.load_balancer_pool or '(none)'}")
                free = [a for a in pool if a not in used_lb]
                if want and want in used_lb:
                    raise AllocationError(name, "spec.loadBalancerIP", f"{want} is already assigned")
                ip = want or (free[0] if free else "")
                if ip:  # with no pool (or an empty one) the Service stays <pending>, as on bare metal
                    raw["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}
                    used_lb.add(ip)
    out = ClusterState(state.cluster, state.namespaces, state.pods, dict(state.objects))
    for key, raw in raws.items():
        o = objs[key]
        out.objects[key] = Object(o.kind, o.namespace, o.name, raw)
    services_of(out)  # allocated values are valid by construction; parsing them again proves it
    return out
