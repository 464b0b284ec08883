"""The API server's part for Services: ClusterIPs, NodePorts, health-check ports, LB addresses.

Pure. `allocate` takes the Services being written, their previous versions, and what is
allocated cluster-wide (`Ranges`, the registry's allocation keys, so a write never needs
to read every Service), and returns the Services with their values filled in (as the API
server persists them) and the new Ranges. Updates keep what was allocated; fixed values
are checked against every other Service's. Allocation is lowest-free rather than random,
so a lab is reproducible: ClusterIPs from .11 of the service range (.1 and .10 stay free
for `kubernetes` and `kube-dns`), NodePorts from 30000.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..model.manifest import lb_pool_addresses
from ..model.objects import Cluster, ClusterState
from ..model.services import NODE_PORT_RANGE, Service, parse_service


class AllocationError(ValueError):
    def __init__(self, obj: str, field: str, msg: str) -> None:
        super().__init__(f"Service {obj}: {field}: {msg}")
        self.obj, self.field, self.msg = obj, field, msg


@dataclass
class Ranges:
    """Who holds each allocated value ("ns/name"), cluster-wide."""

    ips: dict[str, str] = field(default_factory=dict)
    ports: dict[int, str] = field(default_factory=dict)
    lbs: dict[str, str] = field(default_factory=dict)

    def release(self, owners: set[str]) -> None:
        """Frees everything the given Services hold (one pass over each map)."""
        if owners:
            self.ips = {k: v for k, v in self.ips.items() if v not in owners}
            self.ports = {k: v for k, v in self.ports.items() if v not in owners}
            self.lbs = {k: v for k, v in self.lbs.items() if v not in owners}

    def copy(self) -> Ranges:
        return Ranges(dict(self.ips), dict(self.ports), dict(self.lbs))


def services_of(state: ClusterState) -> list[Service]:
    return [parse_service(o.namespace, o.name, o.raw, state.cluster.service_cidr)
            for o in state.objects.values() if o.kind == "Service"]


def held_by(key: str, raw: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """("ip" | "port" | "lb", value) for every value a Service document holds."""
    spec = raw.get("spec") or {}
    if spec.get("clusterIP") and spec["clusterIP"] != "None":
        yield "ip", spec["clusterIP"]
    for p in spec.get("ports") or []:
        if isinstance(p, dict) and p.get("nodePort"):
            yield "port", p["nodePort"]
    if spec.get("healthCheckNodePort"):
        yield "port", spec["healthCheckNodePort"]
    for ing in ((raw.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if isinstance(ing, dict) and ing.get("ip"):
            yield "lb", ing["ip"]
            break


def ranges_of(services: dict[str, dict[str, Any]], cluster: Cluster) -> Ranges:
    """The Ranges that a set of Service documents ("ns/name" -> raw) hold."""
    r = Ranges({cluster.dns_ip: "kube-system/kube-dns"})
    for key, raw in services.items():
        for kind, v in held_by(key, raw):
            if kind == "ip":
                r.ips[v] = key
            elif kind == "port":
                r.ports[v] = key
            else:
                r.lbs[v] = key
    return r


def _keep_previous(raw: dict[str, Any], old: dict[str, Any]) -> None:
    """An update keeps what was allocated, as the API server does."""
    spec = raw.setdefault("spec", {})
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


def allocate(cluster: Cluster, services: dict[str, dict[str, Any]], previous: dict[str, dict[str, Any]],
             ranges: Ranges) -> tuple[dict[str, dict[str, Any]], Ranges]:
    """Fills in the clusterIP, nodePorts, healthCheckNodePort and LB address of `services`
    ("ns/name" -> document), given their `previous` versions and what is held cluster-wide."""
    out = ranges.copy()
    out.release(set(services))  # what a written Service held is its own again, to keep or to give up
    out.ips.setdefault(cluster.dns_ip, "kube-system/kube-dns")
    raws: dict[str, dict[str, Any]] = {}
    # Services that exist already hold their values; a new one that asks for a taken value is the one refused.
    order = sorted(services, key=lambda k: (k not in previous, k))
    for key in order:
        raw = _writable(services[key])
        if key in previous:
            _keep_previous(raw, previous[key])
        raws[key] = raw
    for key in order:  # fixed values first, so they win over allocation
        name, spec = key.split("/", 1)[1], raws[key]["spec"]
        ip = spec.get("clusterIP")
        if ip and ip != "None":
            if ip in out.ips and out.ips[ip] != key:
                raise AllocationError(name, "spec.clusterIP", f"{ip} is already used by Service {out.ips[ip]}")
            out.ips[ip] = key
        fields = [(f"spec.ports[{i}].nodePort", p.get("nodePort")) for i, p in enumerate(spec.get("ports") or [])]
        for fname, val in fields + [("spec.healthCheckNodePort", spec.get("healthCheckNodePort"))]:
            if val:
                if val in out.ports and out.ports[val] != key:
                    what = "NodePort " if "nodePort" in fname else ""
                    raise AllocationError(name, fname, f"{what}{val} is already used by "
                                                       f"{'Service ' if what else ''}{out.ports[val]}")
                out.ports[val] = key

    cidr = ipaddress.ip_network(cluster.service_cidr)
    ip_cursor = [11]
    port_cursor = [NODE_PORT_RANGE[0]]

    def next_ip(owner: str) -> str:
        while ip_cursor[0] < cidr.num_addresses - 1:  # lowest free; within one call it only moves up
            cand = str(cidr.network_address + ip_cursor[0])
            ip_cursor[0] += 1
            if cand not in out.ips:
                out.ips[cand] = owner
                return cand
        raise AllocationError("-", "spec.clusterIP", f"the service range {cidr} is full")

    def next_port(owner: str) -> int:
        while port_cursor[0] <= NODE_PORT_RANGE[1]:
            port = port_cursor[0]
            port_cursor[0] += 1
            if port not in out.ports:
                out.ports[port] = owner
                return port
        raise AllocationError(owner.split("/", 1)[1], "nodePort", "the NodePort range is full")

    pool = lb_pool_addresses(cluster.load_balancer_pool) if cluster.load_balancer_pool else []
    for key in order:
        raw = raws[key]
        prev_lb = next((v for kind, v in held_by(key, raw) if kind == "lb"), None)
        if prev_lb:
            out.lbs[prev_lb] = key
    for key in order:
        name, raw = key.split("/", 1)[1], raws[key]
        spec = raw["spec"]
        typ = spec.get("type", "ClusterIP")
        if typ == "ExternalName":
            continue
        if not spec.get("clusterIP"):
            spec["clusterIP"] = next_ip(key)
        if typ in ("NodePort", "LoadBalancer"):
            for p in spec.get("ports") or []:
                if not p.get("nodePort"):
                    p["nodePort"] = next_port(key)
        if typ == "LoadBalancer":
            if spec.get("externalTrafficPolicy") == "Local" and not spec.get("healthCheckNodePort"):
                spec["healthCheckNodePort"] = next_port(key)
            ingress = ((raw.get("status") or {}).get("loadBalancer") or {}).get("ingress")
            if not ingress:
                want = spec.get("loadBalancerIP")
                if want and want not in pool:
                    raise AllocationError(name, "spec.loadBalancerIP", f"{want} is not in the pool "
                                                                         f"{cluster.load_balancer_pool or '(none)'}")
                if want and want in out.lbs:
                    raise AllocationError(name, "spec.loadBalancerIP", f"{want} is already assigned")
                ip = want or next((a for a in pool if a not in out.lbs), "")
                if ip:  # with no pool (or an empty one) the Service stays <pending>, as on bare metal
                    raw["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}
                    out.lbs[ip] = key
    return raws, out


def _writable(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Service document deep enough for allocation to fill in (spec, its ports,
    status), sharing everything else: deepcopy of 30,000 documents took seconds."""
    out = dict(raw)
    spec = out["spec"] = dict(raw.get("spec") or {})
    if isinstance(spec.get("ports"), list):
        spec["ports"] = [dict(p) if isinstance(p, dict) else p for p in spec["ports"]]
    if isinstance(out.get("status"), dict):
        out["status"] = copy.deepcopy(out["status"])
    return out
