"""The API server's part for Services: ClusterIPs, NodePorts, health-check ports, LB addresses.

Pure. `allocate` takes the Services being written, their previous versions, and what is
allocated cluster-wide (`Ranges`, the registry's allocation keys, so a write never needs
to read every Service), and returns the Services with their values filled in (as the API
server persists them) and the new Ranges. Updates keep what was allocated; fixed values
are checked against every other Service's. Allocation is lowest-free rather than random,
so a lab is reproducible: ClusterIPs from .11 of the service range (.1 and .10 stay free
for `kubernetes` and `kube-dns`), NodePorts from 30000.

ClusterIPs and NodePorts are bitmaps, as kube-apiserver's RangeAllocation keeps them: a /12
service range is 128 KiB whatever the number of Services (a map of value to holder was a
megabyte at 30,000, read and rewritten by every write). Who holds a taken value is not
kept; the refusal says which value, and the caller may look the holder up.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..model.pool import EMPTY, parse_pool
from ..model.objects import Cluster
from ..model.services import NODE_PORT_RANGE


class AllocationError(ValueError):
    def __init__(self, obj: str, field: str, msg: str, taken: tuple[str, Any] | None = None) -> None:
        super().__init__(f"Service {obj}: {field}: {msg}")
        self.obj, self.field, self.msg = obj, field, msg
        self.taken = taken  # ("ip" | "port" | "lb", value) when a value is held by another Service


_FREE_BYTE = re.compile(b"[^\xff]")


class Bitmap:
    """Taken offsets of a range, one bit each (bit i of byte i // 8 is offset i)."""

    def __init__(self, size: int, data: bytes = b"") -> None:
        self.size = size
        self.data = bytearray(data[:(size + 7) // 8].ljust((size + 7) // 8, b"\0"))

    def __contains__(self, i: int) -> bool:
        return 0 <= i < self.size and bool(self.data[i >> 3] >> (i & 7) & 1)

    def add(self, i: int) -> None:
        self.data[i >> 3] |= 1 << (i & 7)

    def discard(self, i: int) -> None:
        if 0 <= i < self.size:
            self.data[i >> 3] &= ~(1 << (i & 7)) & 0xFF

    def first_free(self, start: int) -> int | None:
        """The lowest offset >= start not taken (bytes all taken are skipped at C speed)."""
        i = start
        while i < self.size:
            if i & 7 == 0:
                m = _FREE_BYTE.search(self.data, i >> 3)
                if m is None:
                    return None
                i = max(i, m.start() * 8)
            if i >= self.size:
                return None
            if i not in self:
                return i
            i += 1
        return None

    def copy(self) -> Bitmap:
        return Bitmap(self.size, bytes(self.data))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bitmap) and other.size == self.size and other.data == self.data

    def __repr__(self) -> str:
        return f"Bitmap({self.size}, {[i for i in range(self.size) if i in self][:20]})"


@dataclass
class Ranges:
    """What is allocated cluster-wide: ClusterIPs (offsets in the service range) and NodePorts
    (offsets from 30000) as bitmaps; LoadBalancer addresses, from a small pool, by holder."""

    cidr: str = "10.96.0.0/16"
    ips: Bitmap = field(default_factory=lambda: Bitmap(0))
    ports: Bitmap = field(default_factory=lambda: Bitmap(NODE_PORT_RANGE[1] - NODE_PORT_RANGE[0] + 1))
    lbs: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def empty(cluster: Cluster) -> Ranges:
        net = ipaddress.ip_network(cluster.service_cidr)
        return Ranges(cluster.service_cidr, Bitmap(net.num_addresses))

    def _ip(self, ip: str) -> int:
        return int(ipaddress.ip_address(ip)) - int(ipaddress.ip_network(self.cidr).network_address)

    def _held(self, kind: str, v: Any) -> tuple[Bitmap, int] | None:
        if kind == "ip":
            return self.ips, self._ip(v)
        if kind == "port" and isinstance(v, int):
            return self.ports, v - NODE_PORT_RANGE[0]
        return None

    def take(self, kind: str, v: Any, owner: str) -> None:
        if kind == "lb":
            self.lbs[v] = owner
        elif (at := self._held(kind, v)) is not None:
            at[0].add(at[1])

    def taken(self, kind: str, v: Any) -> bool:
        if kind == "lb":
            return v in self.lbs
        at = self._held(kind, v)
        return at is not None and at[1] in at[0]

    def release(self, key: str, raw: dict[str, Any]) -> None:
        """Frees what the Service document `raw` holds."""
        for kind, v in held_by(key, raw):
            if kind == "lb":
                if self.lbs.get(v) == key:
                    del self.lbs[v]
            elif (at := self._held(kind, v)) is not None:
                at[0].discard(at[1])

    def copy(self) -> Ranges:
        return Ranges(self.cidr, self.ips.copy(), self.ports.copy(), dict(self.lbs))


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
    r = Ranges.empty(cluster)
    r.take("ip", cluster.dns_ip, "kube-system/kube-dns")
    for key, raw in services.items():
        for kind, v in held_by(key, raw):
            r.take(kind, v, key)
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
    if ranges.ips.size == 0 or ranges.cidr != cluster.service_cidr:
        ranges = Ranges(cluster.service_cidr, Ranges.empty(cluster).ips, ranges.ports, ranges.lbs)
    out = ranges.copy()
    for key, old in previous.items():  # what a written Service held is its own again, to keep or to give up
        out.release(key, old)
    out.take("ip", cluster.dns_ip, "kube-system/kube-dns")
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
            if out.taken("ip", ip):
                holder = "Service kube-system/kube-dns" if ip == cluster.dns_ip else "another Service"
                raise AllocationError(name, "spec.clusterIP", f"{ip} is already used by {holder}", ("ip", ip))
            out.take("ip", ip, key)
        fields = [(f"spec.ports[{i}].nodePort", p.get("nodePort")) for i, p in enumerate(spec.get("ports") or [])]
        for fname, val in fields + [("spec.healthCheckNodePort", spec.get("healthCheckNodePort"))]:
            if val:
                if out.taken("port", val):
                    what = "NodePort " if "nodePort" in fname else ""
                    raise AllocationError(name, fname, f"{what}{val} is already used by another Service",
                                          ("port", val))
                out.take("port", val, key)

    cidr = ipaddress.ip_network(cluster.service_cidr)
    cursor = {"ip": 11, "port": 0}

    def next_ip(owner: str) -> str:
        at = out.ips.first_free(cursor["ip"])  # lowest free; within one call it only moves up
        if at is None or at >= cidr.num_addresses - 1:
            raise AllocationError(owner.split("/", 1)[1], "spec.clusterIP", f"the service range {cidr} is full")
        cursor["ip"] = at + 1
        out.ips.add(at)
        return str(cidr.network_address + at)

    def next_port(owner: str) -> int:
        at = out.ports.first_free(cursor["port"])
        if at is None:
            raise AllocationError(owner.split("/", 1)[1], "nodePort", "the NodePort range is full")
        cursor["port"] = at + 1
        out.ports.add(at)
        return NODE_PORT_RANGE[0] + at

    pool = parse_pool(cluster.load_balancer_pool) if cluster.load_balancer_pool else EMPTY
    for key in order:
        prev_lb = next((v for kind, v in held_by(key, raws[key]) if kind == "lb"), None)
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
                    raise AllocationError(name, "spec.loadBalancerIP", f"{want} is already assigned", ("lb", want))
                ip = want or pool.first_free(out.lbs)
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
