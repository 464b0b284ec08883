"""Gateway API (gateway.networking.k8s.io): GatewayClass, Gateway, HTTPRoute, ReferenceGrant, as values.

The core of the GATEWAY-HTTP conformance profile: HTTP and HTTPS listeners (hostname,
certificateRefs to `kubernetes.io/tls` Secrets, allowedRoutes.namespaces From Same, All or
Selector); HTTPRoute parentRefs (sectionName), hostnames, rules with matches on path (Exact,
PathPrefix), headers and query parameters (Exact), and method; filters RequestHeaderModifier,
ResponseHeaderModifier, RequestRedirect and URLRewrite; weighted backendRefs to Services.
What the profile leaves optional and gingham does not do (RegularExpression matches,
request mirroring, other route kinds) is refused naming the field, not ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .fields import FieldError
from .fields import integer as _int
from .fields import items as _list
from .fields import obj as _obj
from .fields import string as _str
from .ingress import check_host
from .labels import matches

GROUP = "gateway.networking.k8s.io"
CONTROLLER = "gingham.dev/gateway-controller"
CLASS = "gingham"
PATH_TYPES = ("Exact", "PathPrefix")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
_SECTION = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

GatewayError = FieldError  # a field and why, as the manifest loader reports them


@dataclass(frozen=True)
class Listener:
    name: str
    protocol: str               # HTTP or HTTPS
    port: int
    hostname: str               # "" for any
    certificates: tuple[tuple[str, str], ...]  # (namespace, Secret name)
    namespaces_from: str        # Same, All or Selector
    namespace_selector: dict[str, Any] | None


@dataclass(frozen=True)
class Gateway:
    namespace: str
    name: str
    class_name: str
    listeners: tuple[Listener, ...]
    created: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ParentRef:
    namespace: str
    name: str
    section: str  # "" for every listener


@dataclass(frozen=True)
class Match:
    path_type: str                        # Exact or PathPrefix
    path: str
    headers: tuple[tuple[str, str], ...]  # (name lowercased, value), exact
    query: tuple[tuple[str, str], ...]    # (name, value), exact
    method: str                           # "" for any


@dataclass(frozen=True)
class Filter:
    type: str
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()
    scheme: str = ""
    hostname: str = ""
    port: int = 0
    path_type: str = ""                   # ReplaceFullPath or ReplacePrefixMatch
    path: str = ""
    status: int = 302


@dataclass(frozen=True)
class BackendRef:
    namespace: str
    name: str
    port: int
    weight: int
    kind: str = "Service"                 # another kind is kept, to be reported InvalidKind
    group: str = ""


@dataclass(frozen=True)
class RouteRule:
    matches: tuple[Match, ...]
    filters: tuple[Filter, ...]
    backends: tuple[BackendRef, ...]


@dataclass(frozen=True)
class HTTPRoute:
    namespace: str
    name: str
    parents: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    rules: tuple[RouteRule, ...]
    created: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ReferenceGrant:
    namespace: str
    name: str
    sources: tuple[tuple[str, str, str], ...]   # (group, kind, namespace)
    targets: tuple[tuple[str, str, str], ...]   # (group, kind, name or "")

    def allows(self, group: str, kind: str, from_ns: str, to_group: str, to_kind: str, to_name: str) -> bool:
        return any((g, k, n) == (group, kind, from_ns) for g, k, n in self.sources) and any(
            (g, k) == (to_group, to_kind) and n in ("", to_name) for g, k, n in self.targets)


def _meta(body: dict[str, Any]) -> dict[str, Any]:
    return _obj(body.get("metadata"), "metadata")


def _created(body: dict[str, Any]) -> str:
    c = _meta(body).get("creationTimestamp")
    return c if isinstance(c, str) else ""


def parse_gateway_class(name: str, body: dict[str, Any]) -> str:
    """The class's controllerName."""
    ctl = _str(_obj(body.get("spec"), "spec").get("controllerName"), "spec.controllerName", required=True)
    if "/" not in ctl:
        raise GatewayError("spec.controllerName", f"{ctl!r} must be a domain-prefixed path (example.com/name)")
    return ctl


def parse_gateway(namespace: str, name: str, body: dict[str, Any]) -> Gateway:
    spec = _obj(body.get("spec"), "spec")
    cls = _str(spec.get("gatewayClassName"), "spec.gatewayClassName", required=True)
    listeners = []
    raw = _list(spec.get("listeners"), "spec.listeners", 64)
    if not raw:
        raise GatewayError("spec.listeners", "at least one listener is required")
    seen: set[str] = set()
    for i, ln in enumerate(raw):
        w = f"spec.listeners[{i}]"
        ln = _obj(ln, w)
        lname = _str(ln.get("name"), f"{w}.name", required=True)
        if not _SECTION.match(lname) or lname in seen:
            raise GatewayError(f"{w}.name", f"{lname!r} must be a DNS label, unique among the listeners")
        seen.add(lname)
        proto = _str(ln.get("protocol"), f"{w}.protocol", required=True)
        if proto not in ("HTTP", "HTTPS"):
            raise GatewayError(f"{w}.protocol", f"{proto!r}: gingham serves HTTP and HTTPS listeners")
        port = _int(ln.get("port"), f"{w}.port", 1, 65535)
        host = _str(ln.get("hostname"), f"{w}.hostname")
        if host:
            check_host(host, f"{w}.hostname")
        certs = []
        tls = _obj(ln.get("tls"), f"{w}.tls")
        if proto == "HTTPS":
            mode = _str(tls.get("mode"), f"{w}.tls.mode") or "Terminate"
            if mode != "Terminate":
                raise GatewayError(f"{w}.tls.mode", "gingham terminates TLS (Passthrough is a TLSRoute's)")
            for j, ref in enumerate(_list(tls.get("certificateRefs"), f"{w}.tls.certificateRefs")):
                ref = _obj(ref, f"{w}.tls.certificateRefs[{j}]")
                certs.append((_str(ref.get("namespace"), "") or namespace,
                              _str(ref.get("name"), f"{w}.tls.certificateRefs[{j}].name", required=True)))
            if not certs:
                raise GatewayError(f"{w}.tls.certificateRefs", "an HTTPS listener needs a certificate")
        ns = _obj(_obj(ln.get("allowedRoutes"), f"{w}.allowedRoutes").get("namespaces"),
                  f"{w}.allowedRoutes.namespaces")
        frm = _str(ns.get("from"), f"{w}.allowedRoutes.namespaces.from") or "Same"
        if frm not in ("Same", "All", "Selector"):
            raise GatewayError(f"{w}.allowedRoutes.namespaces.from", f"must be Same, All or Selector, got {frm!r}")
        sel = _obj(ns.get("selector"), f"{w}.allowedRoutes.namespaces.selector") if frm == "Selector" else None
        listeners.append(Listener(lname, proto, port, host, tuple(certs), frm, sel))
    return Gateway(namespace, name, cls, tuple(listeners), _created(body))


def _pairs(v: Any, field: str, lower: bool = False) -> tuple[tuple[str, str], ...]:
    out = []
    for i, h in enumerate(_list(v, field, 16)):
        h = _obj(h, f"{field}[{i}]")
        name = _str(h.get("name"), f"{field}[{i}].name", required=True)
        if not _HEADER.match(name):
            raise GatewayError(f"{field}[{i}].name", f"{name!r} is not a header or parameter name")
        if h.get("type", "Exact") != "Exact":
            raise GatewayError(f"{field}[{i}].type", "gingham matches Exact values only")
        value = h.get("value")
        if not isinstance(value, str):
            raise GatewayError(f"{field}[{i}].value", "must be a string")
        out.append((name.lower() if lower else name, value))
    return tuple(out)


def _match(m: dict[str, Any], w: str) -> Match:
    path = _obj(m.get("path"), f"{w}.path")
    ptype = _str(path.get("type"), f"{w}.path.type") or "PathPrefix"
    if ptype not in PATH_TYPES:
        raise GatewayError(f"{w}.path.type", f"must be Exact or PathPrefix, got {ptype!r}")
    value = _str(path.get("value"), f"{w}.path.value") or "/"
    if not value.startswith("/") or any(c in value for c in ' "\\#?'):
        raise GatewayError(f"{w}.path.value", f"{value!r} must be an absolute path without spaces, quotes, # or ?")
    method = _str(m.get("method"), f"{w}.method")
    if method and method not in METHODS:
        raise GatewayError(f"{w}.method", f"{method!r} is not an HTTP method")
    return Match(ptype, value, _pairs(m.get("headers"), f"{w}.headers", lower=True),
                 _pairs(m.get("queryParams"), f"{w}.queryParams"), method)


def _modifier(v: Any, w: str) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...], tuple[str, ...]]:
    v = _obj(v, w)
    remove = tuple(_str(x, f"{w}.remove[{i}]", required=True) for i, x in enumerate(_list(v.get("remove"), f"{w}.remove")))
    return _pairs(v.get("set"), f"{w}.set"), _pairs(v.get("add"), f"{w}.add"), remove


def _filter(f: dict[str, Any], w: str) -> Filter:
    ftype = _str(f.get("type"), f"{w}.type", required=True)
    if ftype in ("RequestHeaderModifier", "ResponseHeaderModifier"):
        key = ftype[0].lower() + ftype[1:]
        s, a, r = _modifier(f.get(key), f"{w}.{key}")
        return Filter(ftype, s, a, r)
    if ftype in ("RequestRedirect", "URLRewrite"):
        key = "requestRedirect" if ftype == "RequestRedirect" else "urlRewrite"
        v = _obj(f.get(key), f"{w}.{key}")
        path = _obj(v.get("path"), f"{w}.{key}.path")
        ptype = _str(path.get("type"), f"{w}.{key}.path.type")
        if ptype and ptype not in ("ReplaceFullPath", "ReplacePrefixMatch"):
            raise GatewayError(f"{w}.{key}.path.type", "must be ReplaceFullPath or ReplacePrefixMatch")
        pval = _str(path.get("replaceFullPath" if ptype == "ReplaceFullPath" else "replacePrefixMatch"),
                    f"{w}.{key}.path") if ptype else ""
        if pval and (not pval.startswith("/") or any(c in pval for c in ' "\\#?')):
            raise GatewayError(f"{w}.{key}.path", f"{pval!r} must be an absolute path")
        host = _str(v.get("hostname"), f"{w}.{key}.hostname")
        if host:
            check_host(host, f"{w}.{key}.hostname")
        if ftype == "URLRewrite":
            return Filter(ftype, hostname=host, path_type=ptype, path=pval)
        scheme = _str(v.get("scheme"), f"{w}.{key}.scheme")
        if scheme and scheme not in ("http", "https"):
            raise GatewayError(f"{w}.{key}.scheme", "must be http or https")
        status = _int(v.get("statusCode"), f"{w}.{key}.statusCode", 301, 302, 302)
        port = _int(v.get("port"), f"{w}.{key}.port", 1, 65535, 0) if v.get("port") is not None else 0
        return Filter(ftype, scheme=scheme, hostname=host, port=port, path_type=ptype, path=pval, status=status)
    raise GatewayError(f"{w}.type", f"{ftype!r}: gingham serves RequestHeaderModifier, ResponseHeaderModifier, "
                                    "RequestRedirect and URLRewrite")


def parse_http_route(namespace: str, name: str, body: dict[str, Any]) -> HTTPRoute:
    spec = _obj(body.get("spec"), "spec")
    parents = []
    for i, p in enumerate(_list(spec.get("parentRefs"), "spec.parentRefs", 32)):
        p = _obj(p, f"spec.parentRefs[{i}]")
        if p.get("kind", "Gateway") != "Gateway" or p.get("group", GROUP) != GROUP:
            raise GatewayError(f"spec.parentRefs[{i}].kind", "a route's parent here is a Gateway")
        parents.append(ParentRef(_str(p.get("namespace"), "") or namespace,
                                 _str(p.get("name"), f"spec.parentRefs[{i}].name", required=True),
                                 _str(p.get("sectionName"), f"spec.parentRefs[{i}].sectionName")))
    hostnames = tuple(check_host(_str(h, f"spec.hostnames[{i}]", required=True), f"spec.hostnames[{i}]")
                      for i, h in enumerate(_list(spec.get("hostnames"), "spec.hostnames", 16)))
    rules = []
    raw_rules = _list(spec.get("rules"), "spec.rules", 16) or [{}]
    for i, r in enumerate(raw_rules):
        w = f"spec.rules[{i}]"
        r = _obj(r, w)
        ms = tuple(_match(_obj(m, f"{w}.matches[{j}]"), f"{w}.matches[{j}]")
                   for j, m in enumerate(_list(r.get("matches"), f"{w}.matches", 8))) or (Match("PathPrefix", "/", (), (), ""),)
        fs = tuple(_filter(_obj(f, f"{w}.filters[{j}]"), f"{w}.filters[{j}]")
                   for j, f in enumerate(_list(r.get("filters"), f"{w}.filters", 16)))
        if sum(f.type in ("RequestRedirect", "URLRewrite") for f in fs) > 1:
            raise GatewayError(f"{w}.filters", "RequestRedirect and URLRewrite cannot be combined")
        backends = []
        for j, b in enumerate(_list(r.get("backendRefs"), f"{w}.backendRefs", 16)):
            bw = f"{w}.backendRefs[{j}]"
            b = _obj(b, bw)
            kind, group = _str(b.get("kind"), f"{bw}.kind") or "Service", _str(b.get("group"), f"{bw}.group")
            port = _int(b.get("port"), f"{bw}.port", 1, 65535) if kind == "Service" and not group else \
                _int(b.get("port"), f"{bw}.port", 1, 65535, 0) if b.get("port") is not None else 0
            backends.append(BackendRef(_str(b.get("namespace"), "") or namespace,
                                       _str(b.get("name"), f"{bw}.name", required=True), port,
                                       _int(b.get("weight"), f"{bw}.weight", 0, 1000000, 1), kind, group))
        rules.append(RouteRule(ms, fs, tuple(backends)))
    return HTTPRoute(namespace, name, tuple(parents), hostnames, tuple(rules), _created(body))


def parse_reference_grant(namespace: str, name: str, body: dict[str, Any]) -> ReferenceGrant:
    spec = _obj(body.get("spec"), "spec")
    frm = tuple((_str(f.get("group"), ""), _str(f.get("kind"), f"spec.from[{i}].kind", required=True),
                 _str(f.get("namespace"), f"spec.from[{i}].namespace", required=True))
                for i, f in enumerate(_obj(x, f"spec.from[{i}]") for i, x in enumerate(_list(spec.get("from"), "spec.from"))))
    to = tuple((_str(t.get("group"), ""), _str(t.get("kind"), f"spec.to[{i}].kind", required=True),
                _str(t.get("name"), ""))
               for i, t in enumerate(_obj(x, f"spec.to[{i}]") for i, x in enumerate(_list(spec.get("to"), "spec.to"))))
    if not frm or not to:
        raise GatewayError("spec", "from and to need at least one entry each")
    return ReferenceGrant(namespace, name, frm, to)


def listener_allows(gw: Gateway, ln: Listener, route_ns: str, ns_labels: dict[str, dict[str, str]]) -> bool:
    """allowedRoutes.namespaces: the Gateway's own namespace, all, or those a selector picks."""
    if ln.namespaces_from == "All":
        return True
    if ln.namespaces_from == "Same":
        return route_ns == gw.namespace
    return matches(ln.namespace_selector or {}, ns_labels.get(route_ns, {}))


def intersect(listener_host: str, route_hosts: tuple[str, ...]) -> list[str]:
    """The hostnames a route serves on a listener (the spec's intersection); [""] for any host,
    [] for none."""
    if not route_hosts:
        return [listener_host]
    if not listener_host:
        return list(route_hosts)
    out = []
    for h in route_hosts:
        if h == listener_host:
            out.append(h)
        elif listener_host.startswith("*.") and not h.startswith("*.") and h.endswith(listener_host[1:]):
            out.append(h)
        elif h.startswith("*.") and not listener_host.startswith("*.") and listener_host.endswith(h[1:]):
            out.append(listener_host)
        elif h.startswith("*.") and listener_host.startswith("*."):
            longer = h if len(h) >= len(listener_host) else listener_host
            if longer.endswith((listener_host if longer is h else h)[1:]):
                out.append(longer)
    return list(dict.fromkeys(out))
