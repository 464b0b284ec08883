"""The ingress controllers' objects (Ingress and Gateway API), parsed once from the datastore's.

The agent compiles them (agent/ingress.py); the lab shows their status from the same
decisions (lab/ingress.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..model.gateway import CONTROLLER as GATEWAY_CONTROLLER
from ..model.gateway import (Gateway, HTTPRoute, ReferenceGrant, parse_gateway, parse_gateway_class,
                             parse_http_route, parse_reference_grant)
from ..model.ingress import (Ingress, IngressClass, IngressError, Secret, parse_ingress, parse_ingress_class,
                             parse_secret, served_class)
from ..model.objects import Object
from ..model.services import Service
from .gateway import World, attach

@dataclass
class Objects:
    """The ingress controllers' objects, parsed from the datastore's."""
    ingresses: list[Ingress] = field(default_factory=list)   # of gingham's classes
    classes: dict[str, IngressClass] = field(default_factory=dict)
    secrets: dict[str, Secret] = field(default_factory=dict)
    gateway_classes: dict[str, str] = field(default_factory=dict)  # name -> controllerName
    gateways: list[Gateway] = field(default_factory=list)
    routes: list[HTTPRoute] = field(default_factory=list)
    grants: list[ReferenceGrant] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what did not parse (another writer's objects)


def parse_objects(objects: Mapping[str, Object]) -> Objects:
    out = Objects()
    ingresses = []
    for key, o in objects.items():
        try:
            if o.kind == "Ingress":
                ingresses.append(parse_ingress(o.namespace, o.name, o.raw))
            elif o.kind == "IngressClass":
                out.classes[o.name] = parse_ingress_class(o.name, o.raw)
            elif o.kind == "Secret":
                s = parse_secret(o.namespace, o.name, o.raw)
                out.secrets[s.key] = s
            elif o.kind == "GatewayClass":
                out.gateway_classes[o.name] = parse_gateway_class(o.name, o.raw)
            elif o.kind == "Gateway":
                out.gateways.append(parse_gateway(o.namespace, o.name, o.raw))
            elif o.kind == "HTTPRoute":
                out.routes.append(parse_http_route(o.namespace, o.name, o.raw))
            elif o.kind == "ReferenceGrant":
                out.grants.append(parse_reference_grant(o.namespace, o.name, o.raw))
        except IngressError as e:
            out.skipped.append(f"{key}: {e}")
    out.ingresses = [i for i in ingresses if served_class(i, out.classes)]
    return out


def gateway_world(objs: Objects, services: Mapping[str, Service], namespaces: Mapping[str, dict[str, str]]) -> World:
    """The Gateways of gingham's classes and what attaches to them (ingress/gateway.py)."""
    ours = {g.key: g for g in objs.gateways if objs.gateway_classes.get(g.class_name) == GATEWAY_CONTROLLER}
    others = {g.key for g in objs.gateways} - set(ours)
    return attach(World(ours, others, objs.routes, objs.grants, services, objs.secrets, namespaces))
