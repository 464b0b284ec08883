"""networking.k8s.io/v1 NetworkPolicy as values: parsing, validation and the API's defaulting."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
PROTOCOLS = ("TCP", "UDP", "SCTP")


class NetpolError(ValueError):
    def __init__(self, field: str, msg: str) -> None:
        super().__init__(f"{field}: {msg}")
        self.field, self.msg = field, msg


@dataclass(frozen=True)
class Peer:
    pod_selector: dict[str, Any] | None = None   # None: not given
    ns_selector: dict[str, Any] | None = None
    cidr: str = ""
    excepts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Port:
    protocol: str = "TCP"
    port: int | str | None = None                # None: every port of the protocol
    end_port: int | None = None


@dataclass(frozen=True)
class Rule:
    peers: tuple[Peer, ...] | None               # None (or empty): every peer
    ports: tuple[Port, ...] | None               # None (or empty): every port and protocol


@dataclass(frozen=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: dict[str, Any]
    ingress_isolates: bool
    egress_isolates: bool
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _selector(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise NetpolError(where, "must be a label selector object")
    ml = raw.get("matchLabels") or {}
    if not isinstance(ml, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ml.items()):
        raise NetpolError(f"{where}.matchLabels", "must map label names to string values")
    exprs = raw.get("matchExpressions") or []
    if not isinstance(exprs, list):
        raise NetpolError(f"{where}.matchExpressions", "must be a list")
    for i, e in enumerate(exprs):
        w = f"{where}.matchExpressions[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("key"), str):
            raise NetpolError(w, "needs a key")
        op, values = e.get("operator"), e.get("values")
        if op not in OPERATORS:
            raise NetpolError(f"{w}.operator", f"must be one of {', '.join(OPERATORS)}, got {op!r}")
        if op in ("In", "NotIn") and (not isinstance(values, list) or not values
                                      or not all(isinstance(v, str) for v in values)):
            raise NetpolError(f"{w}.values", f"{op} needs a non-empty list of string values")
        if op in ("Exists", "DoesNotExist") and values:
            raise NetpolError(f"{w}.values", f"{op} takes no values")
    return {"matchLabels": dict(ml), "matchExpressions": list(exprs)}


def _peer(raw: Any, where: str) -> Peer:
    if not isinstance(raw, dict):
        raise NetpolError(where, "must be an object")
    if "ipBlock" in raw:
        if "podSelector" in raw or "namespaceSelector" in raw:
            raise NetpolError(where, "ipBlock cannot be combined with podSelector or namespaceSelector")
        b = raw["ipBlock"] or {}
        if not isinstance(b, dict):
            raise NetpolError(f"{where}.ipBlock", f"must be an object with a cidr, got {b!r}")
        cidr = b.get("cidr")
        try:
            net = ipaddress.ip_network(cidr if isinstance(cidr, str) else "-")
        except ValueError:
            raise NetpolError(f"{where}.ipBlock.cidr", f"{cidr!r} is not a CIDR with its host bits zero") from None
        excepts = []
        raw_excepts = b.get("except") or []
        if not isinstance(raw_excepts, list):
            raise NetpolError(f"{where}.ipBlock.except", f"must be a list of CIDRs, got {raw_excepts!r}")
        for i, e in enumerate(raw_excepts):
            try:
                ex = ipaddress.ip_network(e if isinstance(e, str) else "-")
            except (ValueError, TypeError):
                raise NetpolError(f"{where}.ipBlock.except[{i}]", f"{e!r} is not a CIDR") from None
            if ex.version != net.version or not ex.subnet_of(net) or ex == net:  # type: ignore[arg-type]
                raise NetpolError(f"{where}.ipBlock.except[{i}]", f"{ex} must be strictly inside the cidr {net}")
            excepts.append(str(ex))
        return Peer(cidr=str(net), excepts=tuple(excepts))
    if "podSelector" not in raw and "namespaceSelector" not in raw:
        raise NetpolError(where, "needs podSelector, namespaceSelector or ipBlock")
    return Peer(_selector(raw["podSelector"], f"{where}.podSelector") if "podSelector" in raw else None,
                _selector(raw["namespaceSelector"], f"{where}.namespaceSelector") if "namespaceSelector" in raw else None)


def _port(raw: Any, where: str) -> Port:
    if not isinstance(raw, dict):
        raise NetpolError(where, "must be an object")
    proto = raw.get("protocol", "TCP")
    if not isinstance(proto, str) or proto not in PROTOCOLS:
        raise NetpolError(f"{where}.protocol", f"must be TCP, UDP or SCTP, got {proto!r}")
    port = raw.get("port")
    end = raw.get("endPort")
    if isinstance(port, bool) or (port is not None and not isinstance(port, (int, str))):
        raise NetpolError(f"{where}.port", f"must be a number or a port name, got {port!r}")
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise NetpolError(f"{where}.port", f"must be 1-65535, got {port}")
    if isinstance(port, str) and (not port or len(port) > 15):
        raise NetpolError(f"{where}.port", f"{port!r} is not a valid port name")
    if end is not None:
        if not isinstance(port, int):
            raise NetpolError(f"{where}.endPort", "needs a numeric port")
        if isinstance(end, bool) or not isinstance(end, int) or not port <= end <= 65535:
            raise NetpolError(f"{where}.endPort", f"must be between port ({port}) and 65535, got {end!r}")
    return Port(proto, port, end)


def _rules(raw: Any, where: str, peer_key: str) -> tuple[Rule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise NetpolError(where, "must be a list of rules")
    out = []
    for i, r in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(r, dict):
            raise NetpolError(w, "must be an object")
        peers = r.get(peer_key)
        ports = r.get("ports")
        for key, value in ((peer_key, peers), ("ports", ports)):
            if value is not None and not isinstance(value, list):
                raise NetpolError(f"{w}.{key}", f"must be a list, got {value!r}")
        out.append(Rule(tuple(_peer(p, f"{w}.{peer_key}[{j}]") for j, p in enumerate(peers)) if peers else None,
                        tuple(_port(p, f"{w}.ports[{j}]") for j, p in enumerate(ports)) if ports else None))
    return tuple(out)


def parse_policy(ns: str, name: str, raw: dict[str, Any]) -> NetworkPolicy:
    spec = raw.get("spec")
    if not isinstance(spec, dict):
        raise NetpolError("spec", "is required")
    if "podSelector" not in spec:
        raise NetpolError("spec.podSelector", "is required ({} selects every pod of the namespace)")
    sel = _selector(spec.get("podSelector"), "spec.podSelector")
    ingress = _rules(spec.get("ingress"), "spec.ingress", "from")
    egress = _rules(spec.get("egress"), "spec.egress", "to")
    types = spec.get("policyTypes")
    if types is None:  # the API's defaulting: Ingress always, Egress when egress rules are given
        types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    if not isinstance(types, list) or any(t not in ("Ingress", "Egress") for t in types):
        raise NetpolError("spec.policyTypes", f"must list Ingress and/or Egress, got {types!r}")
    return NetworkPolicy(ns, name, sel, "Ingress" in types, "Egress" in types, ingress, egress)
