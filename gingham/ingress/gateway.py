"""Pure: Gateway API objects -> which routes attach where, what they resolve to, and their status.

One function (`attach`) decides, for every HTTPRoute parentRef, the listeners it attaches to
(a Gateway of a gingham class; the sectionName's listener or all; the listener's allowed
namespaces; a hostname intersection), and for every backendRef whether it resolves (a
Service that exists, in the route's namespace or one whose ReferenceGrant allows it). The
agent compiles the attached rules (haproxy.py); the lab shows the same decisions as the
status the conformance suite reads (`gateway_status`, `route_status`, `class_status`).

Each Gateway is reached through its own LoadBalancer Service, `gingham-system/gw-<ns>-<name>`,
which the lab writes with the Gateway: one port per listener port, its targetPort equal to the
nodePort the allocator gave it (unique in the cluster), which is the port the node's HAProxy
binds for that Gateway's listeners. So every Gateway has an address of its own from the
Cluster's `loadBalancerPool`, and one HAProxy per node serves them all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..model.gateway import (CONTROLLER, GROUP, Gateway, HTTPRoute, Listener, ReferenceGrant, intersect,
                             listener_allows)
from ..model.ingress import GATEWAY_SERVICE_PREFIX, Secret, tls_pair_error
from ..model.services import Service

def service_name(namespace: str, name: str) -> str:
    """The Gateway's Service: gw-<ns>-<name>, shortened with a hash when longer than a DNS label."""
    full = f"{GATEWAY_SERVICE_PREFIX}{namespace}-{name}"
    if len(full) <= 63:
        return full
    return full[:52] + "-" + hashlib.sha256(full.encode()).hexdigest()[:10]


@dataclass
class Attached:
    """One rule of a route on one listener: the hostnames it serves there."""
    route: HTTPRoute
    rule: int
    hostnames: list[str]


@dataclass
class ParentStatus:
    ref: dict[str, Any]
    accepted: tuple[bool, str, str]        # (status, reason, message)
    resolved: tuple[bool, str, str]


@dataclass
class World:
    gateways: dict[str, Gateway]                     # ns/name -> the Gateways of gingham's classes
    other_gateways: set[str]                         # Gateways of other classes: not ours to judge
    routes: list[HTTPRoute]
    grants: list[ReferenceGrant]
    services: Mapping[str, Service]
    secrets: Mapping[str, Secret]
    namespaces: Mapping[str, dict[str, str]]
    attached: dict[tuple[str, str], list[Attached]] = field(default_factory=dict)  # (gateway, listener) -> rules
    parents: dict[str, list[ParentStatus]] = field(default_factory=dict)          # route -> per parentRef
    listener_refs: dict[tuple[str, str], tuple[bool, str, str]] = field(default_factory=dict)

    def granted(self, from_ns: str, kind: str, to_ns: str, to_kind: str, to_name: str) -> bool:
        if from_ns == to_ns:
            return True
        return any(g.namespace == to_ns and g.allows(GROUP, kind, from_ns, "", to_kind, to_name) for g in self.grants)

    def backend_problem(self, route: HTTPRoute, b: Any) -> tuple[str, str] | None:
        """(reason, message) when a backendRef does not resolve."""
        if b.kind != "Service" or b.group:
            return "InvalidKind", f"{b.group or 'core'}/{b.kind} is not a Service"
        if not self.granted(route.namespace, "HTTPRoute", b.namespace, "Service", b.name):
            return "RefNotPermitted", f"no ReferenceGrant in {b.namespace} lets HTTPRoutes of {route.namespace} " \
                                      f"reach Service {b.name}"
        svc = self.services.get(f"{b.namespace}/{b.name}")
        if svc is None or not any(p.port == b.port and p.protocol == "TCP" for p in svc.ports):
            return "BackendNotFound", f"Service {b.namespace}/{b.name} port {b.port} does not exist"
        return None


def attach(w: World) -> World:
    """Fills `attached`, `parents` and `listener_refs` (see the module docstring)."""
    for gkey, gw in w.gateways.items():
        for ln in gw.listeners:
            w.attached[(gkey, ln.name)] = []
            bad = None
            for ns, name in ln.certificates:
                if not w.granted(gw.namespace, "Gateway", ns, "Secret", name):
                    bad = (False, "RefNotPermitted", f"no ReferenceGrant in {ns} lets this Gateway use Secret {name}")
                    break
                s = w.secrets.get(f"{ns}/{name}")
                why = "no such Secret" if s is None else tls_pair_error(s)
                if why:
                    bad = (False, "InvalidCertificateRef", f"Secret {ns}/{name}: {why}")
                    break
            w.listener_refs[(gkey, ln.name)] = bad or (True, "ResolvedRefs", "")
    for route in sorted(w.routes, key=lambda r: (r.created or "~", r.key)):
        problems = [bp for rule in route.rules for b in rule.backends if (bp := w.backend_problem(route, b))]
        resolved = (False, problems[0][0], problems[0][1]) if problems else (True, "ResolvedRefs", "")
        statuses = []
        for p in route.parents:
            gkey = f"{p.namespace}/{p.name}"
            if gkey in w.other_gateways:
                continue  # another controller's Gateway: its status is not ours to write
            ref = {"group": GROUP, "kind": "Gateway", "namespace": p.namespace, "name": p.name}
            if p.section:
                ref["sectionName"] = p.section
            parent = w.gateways.get(gkey)
            listeners = [] if parent is None else [ln for ln in parent.listeners if not p.section or ln.name == p.section]
            if parent is None or not listeners:
                statuses.append(ParentStatus(ref, (False, "NoMatchingParent", "no such Gateway or listener"), resolved))
                continue
            allowed = [ln for ln in listeners if listener_allows(parent, ln, route.namespace, dict(w.namespaces))]
            if not allowed:
                statuses.append(ParentStatus(ref, (False, "NotAllowedByListeners",
                                                   f"the listeners do not allow routes from {route.namespace}"), resolved))
                continue
            hosted = [(ln, hs) for ln in allowed if (hs := intersect(ln.hostname, route.hostnames))]
            if not hosted:
                statuses.append(ParentStatus(ref, (False, "NoMatchingListenerHostname",
                                                   "no hostname of the route matches a listener's"), resolved))
                continue
            for ln, hs in hosted:
                for i in range(len(route.rules)):
                    w.attached[(gkey, ln.name)].append(Attached(route, i, hs))
            statuses.append(ParentStatus(ref, (True, "Accepted", ""), resolved))
        w.parents[route.key] = statuses
    return w


def _condition(kind: str, ok: bool, reason: str, message: str, generation: int, now: str) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": now}


def class_status(controller: str, generation: int, now: str) -> dict[str, Any]:
    if controller != CONTROLLER:
        return {}
    return {"conditions": [_condition("Accepted", True, "Accepted", "", generation, now)]}


def gateway_status(w: World, gkey: str, address: str, generation: int, now: str) -> dict[str, Any]:
    gw = w.gateways[gkey]
    listeners = []
    for ln in gw.listeners:
        ok, reason, msg = w.listener_refs[(gkey, ln.name)]
        attached = len({a.route.key for a in w.attached[(gkey, ln.name)]})
        listeners.append({
            "name": ln.name, "attachedRoutes": attached,
            "supportedKinds": [{"group": GROUP, "kind": "HTTPRoute"}],
            "conditions": [_condition("Accepted", True, "Accepted", "", generation, now),
                           _condition("Programmed", ok and bool(address), "Programmed" if ok and address else "Invalid",
                                      msg, generation, now),
                           _condition("ResolvedRefs", ok, reason, msg, generation, now),
                           _condition("Conflicted", False, "NoConflicts", "", generation, now)]})
    return {
        "addresses": [{"type": "IPAddress", "value": address}] if address else [],
        "conditions": [_condition("Accepted", True, "Accepted", "", generation, now),
                       _condition("Programmed", bool(address), "Programmed" if address else "AddressNotAssigned",
                                  "" if address else "the Cluster's loadBalancerPool has no address for it",
                                  generation, now)],
        "listeners": listeners,
    }


def route_status(w: World, rkey: str, generation: int, now: str) -> dict[str, Any]:
    return {"parents": [{"parentRef": p.ref, "controllerName": CONTROLLER, "conditions": [
        _condition("Accepted", *p.accepted, generation, now),
        _condition("ResolvedRefs", *p.resolved, generation, now)]} for p in w.parents.get(rkey, [])]}


def listener_of(gw: Gateway, name: str) -> Listener:
    return next(ln for ln in gw.listeners if ln.name == name)
