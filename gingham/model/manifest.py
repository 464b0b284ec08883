"""Loading Kubernetes YAML into a ClusterState, refusing bad documents with a precise error.

Every error names the file, the document's position in it, the object and the field, so
a person can go straight to the line. Nothing is returned unless every document is valid.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import replace
from typing import Any, Callable, Iterable

import yaml

from . import yamldocs
from .errors import ManifestError
from .gateway import parse_gateway, parse_gateway_class, parse_http_route, parse_reference_grant
from .ingress import IngressError, parse_ingress, parse_ingress_class, parse_secret
from .objects import BgpPeer, BgpSpec, Cluster, ClusterState, ContainerPort, Namespace, Object, Pod, Probe
from .pool import parse_pool
from .netpol import NetpolError, parse_policy
from .services import ServiceError, parse_service

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PROTOCOLS = ("TCP", "UDP", "SCTP")
KINDS = {
    ("v1", "Namespace"), ("v1", "Pod"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("v1", "Service"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("gingham.dev/v1alpha1", "Cluster"),
    ("networking.k8s.io/v1", "Ingress"), ("networking.k8s.io/v1", "IngressClass"), ("v1", "Secret"),
    ("gateway.networking.k8s.io/v1", "GatewayClass"), ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"), ("gateway.networking.k8s.io/v1", "ReferenceGrant"),
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"),
}
CLUSTER_SCOPED = {"Namespace", "IngressClass", "GatewayClass"}


_INGRESS_PARSERS: dict[str, Callable[[str, str, dict[str, Any]], object]] = {
    "Ingress": parse_ingress, "IngressClass": lambda _ns, name, body: parse_ingress_class(name, body),
    "Secret": parse_secret, "GatewayClass": lambda _ns, name, body: parse_gateway_class(name, body),
    "Gateway": parse_gateway, "HTTPRoute": parse_http_route, "ReferenceGrant": parse_reference_grant,
}


class _Doc:
    """One YAML document and where it came from, for error messages."""

    def __init__(self, file: str, index: int, body: Any) -> None:
        self.file, self.index, self.body = file, index, body
        meta = body.get("metadata") if isinstance(body, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        kind = body.get("kind") if isinstance(body, dict) else None
        self.label = f"{kind or '?'}/{name or '?'}"

    def error(self, field: str, msg: str) -> ManifestError:
        return ManifestError(self.file, self.index, self.label, field, msg)

    def get(self, path: str, want: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        cur: Any = self.body
        for part in path.split("."):
            if not isinstance(cur, dict) or part not in cur or cur[part] is None:
                if required:
                    raise self.error(path, "is required")
                return default
            cur = cur[part]
        if not isinstance(cur, want) or (isinstance(cur, bool) and bool not in (want if isinstance(want, tuple) else (want,))):
            names = "/".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            raise self.error(path, f"must be {names}, got {type(cur).__name__} {cur!r}")
        return cur


def read_documents(paths: Iterable[str]) -> list[_Doc]:
    docs = []
    for path in paths:
        try:
            with open(path) as f:
                loaded = yamldocs.load_all(f)
        except OSError as e:
            raise ManifestError(path, 0, "-", "-", f"cannot read: {e.strerror}") from e
        except UnicodeDecodeError as e:
            raise ManifestError(path, 0, "-", f"byte {e.start}", "not UTF-8 text") from e
        except yaml.YAMLError as e:
            mark, ctx = getattr(e, "problem_mark", None), getattr(e, "context_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
            why, context = str(getattr(e, "problem", None) or e), getattr(e, "context", None)
            if ctx is not None and context:
                why += f" ({context} on line {ctx.line + 1})"
            raise ManifestError(path, 0, "-", where, f"not valid YAML: {why}") from e
        for i, body in enumerate(loaded, 1):
            if body is None:
                continue
            if not isinstance(body, dict):
                raise ManifestError(path, i, "?", "-", "a document must be a mapping (an object)")
            bad = _not_json(body)
            if bad is not None:
                raise _Doc(path, i, body).error(*bad)
            if body.get("kind") == "List" and isinstance(body.get("items"), list):
                docs += [_Doc(path, i, item) for item in body["items"]]
            else:
                docs.append(_Doc(path, i, body))
    return docs


def _not_json(value: Any, where: str = "") -> tuple[str, str] | None:
    """(field, why) where a document holds what JSON cannot (and so neither can the API
    server's objects nor the datastore): a YAML date, set or binary, a key that is not a
    string, a float that is not finite. None when it is all plain."""
    stack = [(value, where)]
    while stack:
        v, at = stack.pop()
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    return at or "-", f"the key {k!r} is not a string (quote it)"
                stack.append((item, f"{at}.{k}" if at else k))
        elif isinstance(v, list):
            stack += [(item, f"{at}[{i}]") for i, item in enumerate(v)]
        elif isinstance(v, float) and v != v or v in (float("inf"), float("-inf")) and isinstance(v, float):
            return at, f"{v!r} is not a number JSON can hold"
        elif not (v is None or isinstance(v, (str, int, float))):
            kind = {"date": "a date", "datetime": "a timestamp", "set": "a set", "bytes": "binary data"}.get(
                type(v).__name__, type(v).__name__)
            return at, f"is {kind}, which a Kubernetes object cannot hold (quote it to make it a string)"
    return None


def _labels(d: _Doc, path: str) -> dict[str, str]:
    labels = d.get(path, dict, {})
    for k, v in labels.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise d.error(f"{path}.{k}", f"label values must be strings, got {v!r} (quote it)")
    return dict(labels)


def _name(d: _Doc, pattern: re.Pattern[str] = _DNS1123_SUBDOMAIN, max_len: int = 253) -> str:
    name = d.get("metadata.name", str, required=True)
    if len(name) > max_len or not pattern.match(name):
        raise d.error("metadata.name", f"{name!r} is not a valid name (lowercase letters, digits, '-')")
    return str(name)


def _ports(d: _Doc, containers_path: str) -> tuple[ContainerPort, ...]:
    containers = d.get(containers_path, list, required=True)
    out = []
    for ci, c in enumerate(containers):
        if not isinstance(c, dict):
            raise d.error(f"{containers_path}[{ci}]", "must be a container object")
        ports = c.get("ports") or []
        if not isinstance(ports, list):
            raise d.error(f"{containers_path}[{ci}].ports", f"must be a list, got {ports!r}")
        for pi, p in enumerate(ports):
            where = f"{containers_path}[{ci}].ports[{pi}]"
            if not isinstance(p, dict):
                raise d.error(where, "must be an object with containerPort")
            port = p.get("containerPort")
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise d.error(f"{where}.containerPort", f"must be a port number 1-65535, got {port!r}")
            proto = p.get("protocol", "TCP")
            if proto not in PROTOCOLS:
                raise d.error(f"{where}.protocol", f"must be one of {', '.join(PROTOCOLS)}, got {proto!r}")
            name = p.get("name", "")
            if name and (not isinstance(name, str) or len(name) > 15 or not _PORT_NAME.match(name)):
                raise d.error(f"{where}.name", f"{name!r} is not a valid port name (at most 15 lowercase chars)")
            out.append(ContainerPort(port, proto, name))
    return tuple(out)


PROBE_ACTIONS = ("tcpSocket", "httpGet", "exec")


def _probe(d: _Doc, spec: str, ports: tuple[ContainerPort, ...]) -> Probe | None:
    """The first container's readinessProbe (kubelet runs one per container; the lab's pod
    has one workload), checked as the API server checks it."""
    for ci, c in enumerate(d.get(f"{spec}.containers", list, [])):
        raw = c.get("readinessProbe") if isinstance(c, dict) else None
        if raw is None:
            continue
        where = f"{spec}.containers[{ci}].readinessProbe"
        if not isinstance(raw, dict):
            raise d.error(where, f"must be an object, got {raw!r}")
        actions = [a for a in PROBE_ACTIONS if a in raw]
        if len(actions) != 1:
            raise d.error(where, f"needs exactly one of {', '.join(PROBE_ACTIONS)}, got {actions or 'none'}")
        action, body = actions[0], raw[actions[0]]
        if not isinstance(body, dict):
            raise d.error(f"{where}.{action}", f"must be an object, got {body!r}")
        timing = {}
        for key, low, default in (("initialDelaySeconds", 0, 0), ("periodSeconds", 1, 10), ("timeoutSeconds", 1, 1),
                                  ("successThreshold", 1, 1), ("failureThreshold", 1, 3)):
            v = raw.get(key, default)
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= 3600:
                raise d.error(f"{where}.{key}", f"must be an integer {low}-3600, got {v!r}")
            timing[key] = v
        port: int | str = 0
        path, command = "/", ()
        if action == "exec":
            cmd = body.get("command")
            if not isinstance(cmd, list) or not cmd or not all(isinstance(x, str) for x in cmd):
                raise d.error(f"{where}.exec.command", f"must be a non-empty list of strings, got {cmd!r}")
            command = tuple(cmd)
        else:
            given = body.get("port")
            names = {p.name for p in ports if p.name}
            if isinstance(given, bool) or not (isinstance(given, int) and 1 <= given <= 65535
                                               or isinstance(given, str) and given in names):
                raise d.error(f"{where}.{action}.port", f"must be a port number or the name of a container port "
                                                        f"({', '.join(sorted(names)) or 'none named'}), got {given!r}")
            port = given
            if action == "httpGet":
                path = body.get("path", "/")
                if not isinstance(path, str) or not path.startswith("/"):
                    raise d.error(f"{where}.httpGet.path", f"must be a path starting with /, got {path!r}")
                if body.get("scheme", "HTTP") != "HTTP":
                    raise d.error(f"{where}.httpGet.scheme", "only HTTP probes are run in the lab")
        return Probe(action, port, path, command, timing["initialDelaySeconds"], timing["periodSeconds"],
                     timing["timeoutSeconds"], timing["successThreshold"], timing["failureThreshold"])
    return None


_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "m": 10**-3, "": 1}


def quantity(v: object) -> float:
    """A Kubernetes resource quantity ("500m", "1.5", "128Mi", "1G", "1e6", 2) as a number."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"{v!r} is not a quantity")
    text = str(v).strip()
    suffix = next((s for s in sorted(_SUFFIXES, key=len, reverse=True) if s and text.endswith(s)), "")
    number = text[:len(text) - len(suffix)] if suffix else text
    try:
        n = float(number)
    except ValueError:
        raise ValueError(f"{v!r} is not a quantity (a number and a suffix: m, k, Ki, M, Mi, G, Gi...)") from None
    if n < 0 or not math.isfinite(n):
        raise ValueError(f"{v!r} is not a quantity")
    return n * _SUFFIXES[suffix]


def _limits(d: _Doc, spec: str) -> tuple[int, int]:
    """The first container's resources.limits: (cpu in millicores, memory in bytes)."""
    for ci, c in enumerate(d.get(f"{spec}.containers", list, [])):
        resources = (c.get("resources") or {}) if isinstance(c, dict) else {}
        if not isinstance(resources, dict):
            raise d.error(f"{spec}.containers[{ci}].resources", "must be an object")
        limits = resources.get("limits")
        if limits is None:
            continue
        where = f"{spec}.containers[{ci}].resources.limits"
        if not isinstance(limits, dict):
            raise d.error(where, f"must be an object, got {limits!r}")
        out = []
        for key, scale, low in (("cpu", 1000, 1), ("memory", 1, 4 << 20)):
            if key not in limits:
                out.append(0)
                continue
            try:
                value = round(quantity(limits[key]) * scale)
            except ValueError as e:
                raise d.error(f"{where}.{key}", str(e)) from None
            if value < low:
                raise d.error(f"{where}.{key}", f"{limits[key]!r} is below what a workload can run in "
                                                f"({'1m' if key == 'cpu' else '4Mi'})")
            out.append(value)
        return out[0], out[1]
    return 0, 0


def _grace(d: _Doc, spec: str) -> float | None:
    v = d.get(f"{spec}.terminationGracePeriodSeconds", int, None)
    if v is not None and not 0 <= v <= 3600:
        raise d.error(f"{spec}.terminationGracePeriodSeconds", f"must be 0-3600, got {v}")
    return None if v is None else float(v)


def _dns_names(d: _Doc, spec: str) -> tuple[str, str]:
    """A pod spec's `hostname` and `subdomain` (DNS labels; the pod's own name is not its
    hostname unless a StatefulSet makes it so)."""
    out = []
    for key in ("hostname", "subdomain"):
        v = d.get(f"{spec}.{key}", str, "")
        if v and (len(v) > 63 or not _DNS1123_LABEL.match(v)):
            raise d.error(f"{spec}.{key}", f"{v!r} is not a DNS label (at most 63 lowercase letters, digits, '-')")
        out.append(v)
    return out[0], out[1]


def _cluster(d: _Doc) -> Cluster:
    name = _name(d, _DNS1123_LABEL, 40)
    raw_nodes = d.get("spec.nodes", (int, list), 2)
    if isinstance(raw_nodes, int):
        if not 1 <= raw_nodes <= 64:
            raise d.error("spec.nodes", f"must be between 1 and 64, got {raw_nodes}")
        nodes = tuple(f"node-{i}" for i in range(1, raw_nodes + 1))
    else:
        for i, n in enumerate(raw_nodes):
            if not isinstance(n, str) or len(n) > 20 or not _DNS1123_LABEL.match(n):
                raise d.error(f"spec.nodes[{i}]", f"{n!r} is not a valid node name (a DNS label of at most 20 chars)")
        if len(set(raw_nodes)) != len(raw_nodes) or not raw_nodes:
            raise d.error("spec.nodes", "node names must be unique and at least one")
        nodes = tuple(raw_nodes)
    cidrs = {}
    for key, default in (("podCIDR", "10.244.0.0/16"), ("serviceCIDR", "10.96.0.0/16")):
        raw = d.get(f"spec.{key}", str, default)
        try:
            cidrs[key] = ipaddress.ip_network(raw)
        except ValueError:
            raise d.error(f"spec.{key}", f"{raw!r} is not a CIDR with its host bits zero") from None
        if cidrs[key].version != 4:
            raise d.error(f"spec.{key}", "the lab is IPv4-only for now")
    if cidrs["podCIDR"].overlaps(cidrs["serviceCIDR"]):
        raise d.error("spec.serviceCIDR", f"overlaps podCIDR {cidrs['podCIDR']}")
    mask = d.get("spec.nodeCIDRMaskSize", int, 24)
    if not cidrs["podCIDR"].prefixlen <= mask <= 28:
        raise d.error("spec.nodeCIDRMaskSize", f"must be between {cidrs['podCIDR'].prefixlen} and 28, got {mask}")
    if 2 ** (mask - cidrs["podCIDR"].prefixlen) < len(nodes):
        raise d.error("spec.podCIDR", f"{cidrs['podCIDR']} has room for fewer than {len(nodes)} /{mask} node subnets")
    overlay = d.get("spec.overlay", str, "vxlan")
    if overlay not in ("vxlan", "host-gw", "bgp"):
        raise d.error("spec.overlay", f"must be vxlan, host-gw or bgp, got {overlay!r}")
    racks = _racks(d, nodes)
    if overlay == "host-gw" and len(racks) > 1:
        raise d.error("spec.overlay", f"host-gw routes to the other nodes over one shared L2 segment, and racks "
                                      f"{racks[0][0]} and {racks[1][0]} are separate segments: use vxlan or bgp")
    bgp = _bgp(d, nodes) if overlay == "bgp" else None
    if bgp is not None and bgp.route_reflectors and len(racks) > 1:
        raise d.error("spec.bgp.routeReflectors", "not with racks yet: the nodes of a rack peer with each other "
                                                  "and with their rack's router")
    if bgp is None and d.get("spec.bgp", dict, None) is not None:
        raise d.error("spec.bgp", "only with overlay: bgp")
    pool = d.get("spec.loadBalancerPool", str, "")
    if pool:
        try:
            parse_pool(pool)
        except ValueError as e:
            raise d.error("spec.loadBalancerPool", str(e)) from None
    domain = d.get("spec.clusterDomain", str, "cluster.local").strip(".").lower()
    if not _DNS1123_SUBDOMAIN.match(domain):
        raise d.error("spec.clusterDomain", f"{domain!r} is not a DNS domain")
    upstreams = []
    for i, u in enumerate(d.get("spec.upstreamDNS", list, [])):
        try:
            upstreams.append(str(ipaddress.ip_address(u)))
        except ValueError:
            raise d.error(f"spec.upstreamDNS[{i}]", f"{u!r} is not an IP address") from None
    return Cluster(name, nodes, str(cidrs["podCIDR"]), str(cidrs["serviceCIDR"]), mask, overlay, domain,
                   tuple(upstreams), pool, bgp, racks)


MAX_RACKS = 50  # the lab gives rack i the segment 192.168.(200+i).0/24


def _racks(d: Any, nodes: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """spec.racks ([{name, nodes}], optional): the nodes on separate L3 segments, every node in
    exactly one; the lab joins the segments with a router."""
    raw = d.get("spec.racks", list, [])
    if not raw:
        return ()
    if len(raw) > MAX_RACKS:
        raise d.error("spec.racks", f"at most {MAX_RACKS} racks, got {len(raw)}")
    out: list[tuple[str, tuple[str, ...]]] = []
    seen: dict[str, str] = {}
    for i, r in enumerate(raw):
        where = f"spec.racks[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("name"), str) or not isinstance(r.get("nodes"), list):
            raise d.error(where, "must be {name, nodes: [node names]}")
        if not _DNS1123_LABEL.match(r["name"]) or any(r["name"] == o for o, _ in out):
            raise d.error(f"{where}.name", f"{r['name']!r} is not a DNS label, or another rack has it")
        for j, n in enumerate(r["nodes"]):
            if n not in nodes:
                raise d.error(f"{where}.nodes[{j}]", f"{n!r} is not one of the nodes ({', '.join(nodes)})")
            if n in seen:
                raise d.error(f"{where}.nodes[{j}]", f"{n} is in rack {seen[n]} already")
            seen[n] = r["name"]
        out.append((r["name"], tuple(r["nodes"])))
    lost = [n for n in nodes if n not in seen]
    if lost:
        raise d.error("spec.racks", f"every node goes in a rack; {', '.join(lost)} in none")
    return tuple(out)


def _as_number(d: Any, path: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 4294967294 or n == 23456:
        raise d.error(path, f"{n!r} is not an AS number (1-4294967294; 23456 is AS_TRANS)")
    return int(n)


def _bgp(d: Any, nodes: tuple[str, ...]) -> BgpSpec:
    """spec.bgp (all of it optional): asNumber (64512, a private AS, as Calico's default),
    routeReflectors (node names; none: a full mesh), peers ([{address, asNumber}]: external
    routers every node peers with over eBGP)."""
    asn = _as_number(d, "spec.bgp.asNumber", d.get("spec.bgp.asNumber", int, 64512))
    rrs = d.get("spec.bgp.routeReflectors", list, [])
    for i, n in enumerate(rrs):
        if n not in nodes:
            raise d.error(f"spec.bgp.routeReflectors[{i}]", f"{n!r} is not one of the nodes ({', '.join(nodes)})")
    peers = []
    for i, p in enumerate(d.get("spec.bgp.peers", list, [])):
        where = f"spec.bgp.peers[{i}]"
        if not isinstance(p, dict):
            raise d.error(where, "must be {address, asNumber}")
        try:
            addr = str(ipaddress.IPv4Address(p.get("address")))
        except ValueError:
            raise d.error(f"{where}.address", f"{p.get('address')!r} is not an IPv4 address") from None
        peer_as = _as_number(d, f"{where}.asNumber", p.get("asNumber"))
        if peer_as == asn:
            raise d.error(f"{where}.asNumber", f"is the nodes' own AS {asn}: an external peer is eBGP")
        peers.append(BgpPeer(addr, peer_as))
    return BgpSpec(asn, tuple(dict.fromkeys(rrs)), tuple(peers))


def parse(paths: Iterable[str], base: ClusterState | None = None) -> ClusterState:
    """Validates every document of `paths` and returns the state they describe (merged onto `base`)."""
    docs = read_documents(paths)
    state = ClusterState() if base is None else ClusterState(base.cluster, dict(base.namespaces), dict(base.pods),
                                                              dict(base.objects))
    seen: dict[str, _Doc] = {}
    pending_pods: list[tuple[_Doc, Pod]] = []
    pending_services: list[tuple[_Doc, str, str]] = []
    for d in docs:
        api, kind = d.get("apiVersion", str, required=True), d.get("kind", str, required=True)
        if not kind:
            raise d.error("kind", "is required")
        if (api, kind) not in KINDS:
            known = ", ".join(f"{a} {k}" for a, k in sorted(KINDS))
            raise d.error("apiVersion/kind", f"{api} {kind} is not something the lab understands ({known})")
        ns = d.get("metadata.namespace", str, "default") if kind not in CLUSTER_SCOPED else ""
        if kind == "Cluster":
            cluster = _cluster(d)
            if base is not None and cluster != base.cluster:
                raise d.error("spec", f"the Cluster of a running lab cannot change (it is {base.cluster}); "
                                      "use `gingham lab down` and `up` for a new one")
            state.cluster = cluster
            continue
        name = _name(d) if kind != "Namespace" else _name(d, _DNS1123_LABEL, 63)
        key = f"{kind}/{ns}/{name}"
        if key in seen:
            prev = seen[key]
            raise d.error("metadata.name", f"{kind} {name} is defined twice (also in {prev.file}, document {prev.index})")
        seen[key] = d
        if kind == "Namespace":
            state.namespaces[name] = Namespace(name, _labels(d, "metadata.labels"))
        elif kind == "Pod":
            ports = _ports(d, "spec.containers")
            pending_pods.append((d, Pod(ns, name, _labels(d, "metadata.labels"), d.get("spec.nodeName", str, ""),
                                        ports, "", *_dns_names(d, "spec"), _probe(d, "spec", ports),
                                        _grace(d, "spec"), d.get("spec.hostNetwork", bool, False),
                                        *_limits(d, "spec"))))
        elif kind in ("Deployment", "StatefulSet"):
            replicas = d.get("spec.replicas", int, 1)
            if replicas < 0 or replicas > 500:
                raise d.error("spec.replicas", f"must be between 0 and 500, got {replicas}")
            sel = d.get("spec.selector.matchLabels", dict, required=True)
            tlabels = _labels(d, "spec.template.metadata.labels")
            for k, v in sel.items():
                if tlabels.get(k) != v:
                    raise d.error("spec.selector.matchLabels", f"{k}={v} does not match the template's labels")
            ports = _ports(d, "spec.template.spec.containers")
            node = d.get("spec.template.spec.nodeName", str, "")
            owner = f"{kind}/{name}"  # a re-applied Deployment owns exactly its new replicas
            hostname, subdomain = _dns_names(d, "spec.template.spec")
            if kind == "StatefulSet":  # each pod is named for itself, under the governing Service
                subdomain = d.get("spec.serviceName", str, required=True)
                if len(subdomain) > 63 or not _DNS1123_LABEL.match(subdomain):
                    raise d.error("spec.serviceName", f"{subdomain!r} is not a DNS label")
            state.pods = {k: p for k, p in state.pods.items() if not (p.namespace == ns and p.owner == owner)}
            for i in range(replicas):
                pod_name = f"{name}-{i}"
                pending_pods.append((d, Pod(ns, pod_name, tlabels, node, ports, owner,
                                            pod_name if kind == "StatefulSet" else hostname, subdomain,
                                            _probe(d, "spec.template.spec", ports),
                                            _grace(d, "spec.template.spec"),
                                            d.get("spec.template.spec.hostNetwork", bool, False),
                                            *_limits(d, "spec.template.spec"))))
            state.objects[f"{kind}/{ns}/{name}"] = Object(kind, ns, name, d.body)
        else:
            d.get("spec", dict, {})
            if kind == "Service":
                pending_services.append((d, ns, name))
            if kind == "NetworkPolicy":
                try:
                    parse_policy(ns, name, d.body)
                except NetpolError as e:
                    raise d.error(e.field, e.msg) from None
            elif kind in _INGRESS_PARSERS:
                try:
                    _INGRESS_PARSERS[kind](ns, name, d.body)
                except IngressError as e:
                    raise d.error(e.field, e.msg) from None
            state.objects[f"{kind}/{ns}/{name}"] = Object(kind, ns, name, d.body)
    for d, pod in pending_pods:
        if pod.node_name and pod.node_name not in state.cluster.nodes:
            raise d.error("spec.nodeName", f"{pod.node_name!r} is not a node of cluster {state.cluster.name} "
                                           f"({', '.join(state.cluster.nodes)})")
        if base is not None and pod.key in base.pods:  # an updated pod stays where it was scheduled
            pod = replace(pod, node_name=pod.node_name or base.pods[pod.key].node_name)
        state.pods[pod.key] = pod
    for d, ns, name in pending_services:
        try:
            parse_service(ns, name, d.body, state.cluster.service_cidr)
        except ServiceError as e:
            raise d.error(e.field, e.msg) from None
    for pod in state.pods.values():
        if pod.namespace not in state.namespaces:
            state.namespaces[pod.namespace] = Namespace(pod.namespace)
    state.namespaces.setdefault("default", Namespace("default"))
    return state


def schedule(state: ClusterState) -> ClusterState:
    """Gives every pod without a node one, round-robin over the nodes in pod order."""
    counts = {n: 0 for n in state.cluster.nodes}
    for p in state.pods.values():
        if p.node_name in counts:
            counts[p.node_name] += 1
    pods = {}
    for key, p in state.pods.items():
        if not p.node_name:
            node = min(state.cluster.nodes, key=lambda n: (counts[n], state.cluster.nodes.index(n)))
            counts[node] += 1
            p = replace(p, node_name=node)
        pods[key] = p
    state.pods = pods
    return state
