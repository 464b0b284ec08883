"""Services and EndpointSlices as values: projection from the manifest, validation, derivation.

`parse_service` turns a v1 Service document into a `Service` (or a precise error);
`derive_endpoints` is the EndpointSlice controller: pods selected by each Service, with
named targetPorts resolved per pod and the ready/serving/terminating conditions.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Callable

from .labels import matches

NODE_PORT_RANGE = (30000, 32767)
PROTOCOLS = ("TCP", "UDP", "SCTP")
DEFAULT_AFFINITY_TIMEOUT = 10800


@dataclass(frozen=True)
class ServicePort:
    name: str
    protocol: str
    port: int
    target_port: int | str
    node_port: int = 0


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    type: str = "ClusterIP"
    cluster_ip: str = ""           # "" until allocated; "None" for headless
    ports: tuple[ServicePort, ...] = ()
    selector: dict[str, str] | None = None
    session_affinity: bool = False
    affinity_timeout: int = DEFAULT_AFFINITY_TIMEOUT
    external_ips: tuple[str, ...] = ()
    lb_source_ranges: tuple[str, ...] = ()
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0
    publish_not_ready: bool = False
    load_balancer_ip: str = ""     # status.loadBalancer.ingress[0].ip once assigned
    external_name: str = ""

    @cached_property
    def key(self) -> str:
        """`ns/name`, computed once: the proxy indexes every Service by it on each sync."""
        return f"{self.namespace}/{self.name}"

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"

    @property
    def external(self) -> bool:
        return self.type in ("NodePort", "LoadBalancer")


@dataclass(frozen=True)
class Endpoint:
    ip: str
    node: str
    pod: str                       # ns/name
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    ports: tuple[tuple[str, str, int], ...] = ()  # (service port name, protocol, resolved target port)
    hostname: str = ""

    def port_for(self, sp: ServicePort) -> int | None:
        for name, proto, port in self.ports:
            if name == sp.name and proto == sp.protocol:
                return port
        return None


class ServiceError(ValueError):
    """A Service field is invalid; `field` is its path in the manifest."""

    def __init__(self, field: str, msg: str) -> None:
        super().__init__(f"{field}: {msg}")
        self.field, self.msg = field, msg


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@lru_cache(maxsize=64)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The service range, parsed once (not once per Service)."""
    return ipaddress.ip_network(cidr)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """ipaddress.ip_address, with IPv4 read by the C parser (as strict: four decimal octets,
    no leading zeros), since every Service of a listing passes here."""
    if isinstance(text, str) and ":" not in text:
        try:
            return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
        except OSError:
            raise ValueError(text) from None
    return ipaddress.ip_address(text)


def _typed(d: dict[str, Any], key: str, want: type | tuple[type, ...], default: Any, where: str) -> Any:
    """`d[key]` when it has the type the API gives it (absent or null: `default`)."""
    v = d.get(key)
    if v is None:
        return default
    types = want if isinstance(want, tuple) else (want,)
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
        names = " or ".join({"str": "a string", "int": "an integer", "bool": "true or false", "dict": "an object",
                             "list": "a list"}[t.__name__] for t in types)
        raise ServiceError(where, f"must be {names}, got {v!r}")
    return v


def parse_service(ns: str, name: str, raw: dict[str, Any], service_cidr: str) -> Service:
    spec = _typed(raw, "spec", dict, {}, "spec")
    typ = _typed(spec, "type", str, "ClusterIP", "spec.type")
    if typ not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        raise ServiceError("spec.type", f"must be ClusterIP, NodePort, LoadBalancer or ExternalName, got {typ!r}")
    cidr = _network(service_cidr)
    cip = _typed(spec, "clusterIP", str, "", "spec.clusterIP")
    if cip not in ("", "None"):
        try:
            ip = _address(cip)
        except (ValueError, TypeError):
            raise ServiceError("spec.clusterIP", f"{cip!r} is not an IP address (or \"None\" for headless)") from None
        if ip not in cidr or ip in (cidr.network_address, cidr.broadcast_address):
            raise ServiceError("spec.clusterIP", f"{cip} is not in the service range {cidr}")
    if cip == "None" and typ != "ClusterIP":
        raise ServiceError("spec.clusterIP", f"a {typ} Service cannot be headless")
    raw_ports = _typed(spec, "ports", list, [], "spec.ports")
    if not raw_ports and typ != "ExternalName" and cip != "None":
        raise ServiceError("spec.ports", "at least one port is required")
    ports: list[ServicePort] = []
    seen: set[tuple[str, str]] = set()
    for i, p in enumerate(raw_ports):
        where = f"spec.ports[{i}]"
        if not isinstance(p, dict):
            raise ServiceError(where, "must be an object")
        pname = _typed(p, "name", str, "", f"{where}.name")
        if len(raw_ports) > 1 and not pname:
            raise ServiceError(f"{where}.name", "is required when a Service has more than one port")
        proto = _typed(p, "protocol", str, "TCP", f"{where}.protocol")
        if proto not in PROTOCOLS:
            raise ServiceError(f"{where}.protocol", f"must be TCP, UDP or SCTP, got {proto!r}")
        port: int = _typed(p, "port", int, 0, f"{where}.port")
        if not 1 <= port <= 65535:
            raise ServiceError(f"{where}.port", f"must be a port number 1-65535, got {port!r}")
        tp = _typed(p, "targetPort", (int, str), port, f"{where}.targetPort")
        if _int(tp):
            if not 1 <= tp <= 65535:
                raise ServiceError(f"{where}.targetPort", f"must be 1-65535 or a port name, got {tp!r}")
        elif not tp or len(tp) > 15:
            raise ServiceError(f"{where}.targetPort", f"must be a number or a container port name, got {tp!r}")
        np_ = _typed(p, "nodePort", int, 0, f"{where}.nodePort")
        if np_:
            if typ not in ("NodePort", "LoadBalancer"):
                raise ServiceError(f"{where}.nodePort", f"only NodePort and LoadBalancer Services have one ({typ})")
            if not NODE_PORT_RANGE[0] <= np_ <= NODE_PORT_RANGE[1]:
                raise ServiceError(f"{where}.nodePort", f"must be in {NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}, "
                                                        f"got {np_!r}")
        if (pname, proto) in seen or (port, proto) in {(q.port, q.protocol) for q in ports}:
            raise ServiceError(f"{where}", f"duplicate port {pname or port}/{proto}")
        seen.add((pname, proto))
        ports.append(ServicePort(pname, proto, port, tp, np_))
    sel = spec.get("selector")
    if sel is not None:
        if not isinstance(sel, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sel.items()):
            raise ServiceError("spec.selector", "must map label names to string values")
    affinity = _typed(spec, "sessionAffinity", str, "None", "spec.sessionAffinity")
    if affinity not in ("None", "ClientIP"):
        raise ServiceError("spec.sessionAffinity", f"must be None or ClientIP, got {affinity!r}")
    where = "spec.sessionAffinityConfig.clientIP.timeoutSeconds"
    config = _typed(spec, "sessionAffinityConfig", dict, {}, "spec.sessionAffinityConfig")
    client = _typed(config, "clientIP", dict, {}, "spec.sessionAffinityConfig.clientIP")
    timeout = _typed(client, "timeoutSeconds", int, DEFAULT_AFFINITY_TIMEOUT, where)
    if not 1 <= timeout <= 86400:
        raise ServiceError(where, f"must be 1-86400, got {timeout!r}")
    ext = []
    for i, e in enumerate(_typed(spec, "externalIPs", list, [], "spec.externalIPs")):
        try:
            ext.append(str(ipaddress.ip_address(e if isinstance(e, str) else "-")))
        except ValueError:
            raise ServiceError(f"spec.externalIPs[{i}]", f"{e!r} is not an IP address") from None
    ranges = []
    for i, r in enumerate(_typed(spec, "loadBalancerSourceRanges", list, [], "spec.loadBalancerSourceRanges")):
        try:
            ranges.append(str(ipaddress.ip_network(r if isinstance(r, str) else "-", strict=False)))
        except ValueError:
            raise ServiceError(f"spec.loadBalancerSourceRanges[{i}]", f"{r!r} is not a CIDR") from None
    etp = _typed(spec, "externalTrafficPolicy", str, "Cluster", "spec.externalTrafficPolicy")
    itp = _typed(spec, "internalTrafficPolicy", str, "Cluster", "spec.internalTrafficPolicy")
    for f, v in (("externalTrafficPolicy", etp), ("internalTrafficPolicy", itp)):
        if v not in ("Cluster", "Local"):
            raise ServiceError(f"spec.{f}", f"must be Cluster or Local, got {v!r}")
    if etp == "Local" and typ not in ("NodePort", "LoadBalancer"):
        raise ServiceError("spec.externalTrafficPolicy", "applies only to NodePort and LoadBalancer Services")
    hc = _typed(spec, "healthCheckNodePort", int, 0, "spec.healthCheckNodePort")
    if hc and not NODE_PORT_RANGE[0] <= hc <= NODE_PORT_RANGE[1]:
        raise ServiceError("spec.healthCheckNodePort", f"must be in {NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}")
    status = _typed(raw, "status", dict, {}, "status")
    lb_status = _typed(status, "loadBalancer", dict, {}, "status.loadBalancer")
    ingress = _typed(lb_status, "ingress", list, [], "status.loadBalancer.ingress")
    status_ip = ""
    if ingress:
        first = ingress[0]
        if not isinstance(first, dict):
            raise ServiceError("status.loadBalancer.ingress[0]", f"must be an object, got {first!r}")
        status_ip = _typed(first, "ip", str, "", "status.loadBalancer.ingress[0].ip")
    spec_ip = _typed(spec, "loadBalancerIP", str, "", "spec.loadBalancerIP")
    for what, value in (("status.loadBalancer.ingress[0].ip", status_ip), ("spec.loadBalancerIP", spec_ip)):
        if value:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ServiceError(what, f"{value!r} is not an IP address") from None
    lb_ip = status_ip or spec_ip
    ext_name = _typed(spec, "externalName", str, "", "spec.externalName")
    if typ == "ExternalName" and not ext_name:
        raise ServiceError("spec.externalName", "is required for an ExternalName Service")
    pnra = _typed(spec, "publishNotReadyAddresses", bool, False, "spec.publishNotReadyAddresses")
    return Service(ns, name, typ, cip, tuple(ports), sel, affinity == "ClientIP", int(timeout), tuple(ext),
                   tuple(ranges), etp == "Local", itp == "Local", int(hc), pnra, lb_ip, ext_name)


@dataclass(frozen=True)
class PodView:
    """What the EndpointSlice controller needs of a pod."""

    namespace: str
    name: str
    labels: dict[str, str]
    node: str
    ip: str
    ready: bool
    terminating: bool = False
    ports: tuple[tuple[str, str, int], ...] = ()  # (containerPort name, protocol, port)
    hostname: str = ""   # spec.hostname
    subdomain: str = ""  # spec.subdomain


def resolve_target(sp: ServicePort, pod: PodView) -> int | None:
    """A numeric targetPort as is; a named one looked up on this pod for the port's protocol."""
    if isinstance(sp.target_port, int):
        return sp.target_port
    for name, proto, port in pod.ports:
        if name == sp.target_port and proto == sp.protocol:
            return port
    return None


@lru_cache(maxsize=1 << 16)
def ip_order(ip: str) -> tuple[int, int]:
    """The sort key of an address (IPv4 before IPv6), parsed once per address seen."""
    a = ipaddress.ip_address(ip)
    return a.version, int(a)


def derive_endpoints(services: list[Service], pods: list[PodView]) -> dict[str, list[Endpoint]]:
    """svc key -> endpoints, as the EndpointSlice controller publishes them (sorted by IP).

    Pods are ordered by address once, and the pods a selector matches are found once per
    namespace and selector, however many Services share it."""
    out: dict[str, list[Endpoint]] = {}
    by_ns: dict[str, list[PodView]] = {}
    for pod in sorted((p for p in pods if p.ip), key=lambda p: ip_order(p.ip)):
        by_ns.setdefault(pod.namespace, []).append(pod)
    selected: dict[tuple[str, tuple[tuple[str, str], ...]], list[PodView]] = {}
    for svc in services:
        if svc.selector is None or svc.type == "ExternalName":
            continue
        which = (svc.namespace, tuple(sorted(svc.selector.items())))
        chosen = selected.get(which)
        if chosen is None:
            sel = {"matchLabels": svc.selector}
            chosen = selected[which] = [p for p in by_ns.get(svc.namespace, ()) if matches(sel, p.labels)]
        eps = []
        for pod in chosen:
            ports = tuple((sp.name, sp.protocol, t) for sp in svc.ports if (t := resolve_target(sp, pod)) is not None)
            if svc.ports and not ports:
                continue
            ready = pod.ready and not pod.terminating
            # the EndpointSlice controller's rule: an endpoint has a hostname only when its pod names
            # this Service as its subdomain (a StatefulSet's pods); never the pod's name otherwise
            host = pod.hostname if pod.hostname and pod.subdomain == svc.name else ""
            eps.append(Endpoint(pod.ip, pod.node, f"{pod.namespace}/{pod.name}", ready or svc.publish_not_ready,
                                pod.ready, pod.terminating, ports, host))
        out[svc.key] = eps
    return out


def usable(eps: list[Endpoint], keep: Callable[[Endpoint], bool] = lambda e: True) -> list[Endpoint]:
    """kube-proxy's choice: the ready ones; if none, the serving+terminating ones."""
    pool = [e for e in eps if keep(e)]
    ready = [e for e in pool if e.ready]
    return ready or [e for e in pool if e.serving and e.terminating]


__all__ = ["Endpoint", "PodView", "Service", "ServiceError", "ServicePort", "derive_endpoints", "parse_service",
           "resolve_target", "usable"]
