"""Pure: a route table, the Services, their endpoints and the TLS Secrets -> an HAProxy configuration.

One frontend listens on :80 and on :443 (TLS, ALPN h2 and http/1.1). It picks the host
(`txn.vhost`: the Host header's exact rule, else a matching wildcard, else none) and then
the first route of that host whose path matches, in the table's precedence order
(routes.py); nothing matched goes to the default backend, else a 404. A route to a Service
or port that does not exist answers 503 (the other routes keep serving); a Service without
ready endpoints answers 503 too (HAProxy's own answer for a backend without servers).

Backends are one per Service port, `balance roundrobin` over the ready endpoints (the
terminating ones when no endpoint is ready, as kube-proxy does). Each has a power-of-two
number of server slots, the unused ones disabled: when only endpoints change, the agent
moves addresses into the slots over the runtime API (`skeleton` is the same) instead of
reloading. The backend sees the client: `X-Forwarded-For`, `X-Forwarded-Proto` and
`Forwarded` (for, proto).

TLS: SNI picks the certificate by the Ingress's `tls.hosts` (crt-list filters), never by the
names inside it; a host without a usable Secret, an unknown SNI, or no SNI gets the default
certificate (self-signed, the agent's). The Host header, not the SNI, picks the route. Plain
HTTP to a host that also has TLS is served over HTTP: no automatic redirect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..model.ingress import Secret, tls_pair_error
from ..model.services import Endpoint, Service, ServicePort, usable
from .gateway import World
from .quoting import quote
from .slots import commands, place, server_lines
from .gateway_proxy import compile_gateways
from .routes import BackendRef, Route, RouteTable

NOT_FOUND = "gingham-not-found"
MISSING = "gingham-missing-backend"


@dataclass
class ProxyConfig:
    text: str
    skeleton: str                       # the text with every slot empty: equal skeletons differ in servers only
    files: dict[str, bytes]             # name (relative to the directory) -> content
    servers: dict[str, list[str]]       # backend -> "ip:port" per slot ("" for an empty one)
    problems: list[str] = field(default_factory=list)  # routes to nothing, unusable Secrets, conflicts


def _service_port(svc: Service, port: int | str) -> ServicePort | None:
    for sp in svc.ports:
        if sp.protocol == "TCP" and (sp.port == port if isinstance(port, int) else sp.name == port):
            return sp
    return None


def _backend(ref: BackendRef, services: Mapping[str, Service],
             endpoints: Mapping[str, list[Endpoint]]) -> tuple[str, list[str]] | None:
    """The backend's name (one per Service port, however the routes name the port) and its
    "ip:port"s; None when the Service (an ExternalName is none here) or its port does not exist."""
    svc = services.get(f"{ref.namespace}/{ref.service}")
    if svc is None or svc.type == "ExternalName":
        return None
    sp = _service_port(svc, ref.port)
    if sp is None:
        return None
    out = []
    for e in usable(list(endpoints.get(svc.key, []))):
        port = e.port_for(sp)
        if port is not None:
            out.append(f"{e.ip}:{port}")
    return f"be_{ref.namespace}_{ref.service}_{sp.port}", out


def _host_cond(host: str) -> str:
    return f"{{ var(txn.vhost) -m str {quote(host)} }}" if host else "!{ var(txn.vhost) -m found }"


def _route_cond(r: Route) -> str:
    h = _host_cond(r.host)
    if r.kind == "Exact":
        return f"{h} {{ path -m str {quote(r.path)} }}"
    if r.path == "/":
        return h
    return f"{h} {{ path -m str {quote(r.path)} }} || {h} {{ path -m beg {quote(r.path + '/')} }}"


def _wildcard_regex(pattern: str) -> str:
    """`*.example.com` -> a regex of one label and the suffix, dots as `[.]` (no escapes to quote)."""
    return "^[^.]+" + pattern[1:].replace(".", "[.]") + "$"


def compile_proxy(table: RouteTable, services: Mapping[str, Service], endpoints: Mapping[str, list[Endpoint]],
                  secrets: Mapping[str, Secret], directory: str, previous: ProxyConfig | None = None,
                  gateways: World | None = None) -> ProxyConfig:
    """The configuration; `previous` (what runs now) keeps each server in its slot; `gateways`
    (attached) adds their frontends (gateway_proxy.py)."""
    problems = list(table.conflicts)
    head = [
        "# written by the gingham agent from the Ingresses it serves: do not edit",
        "global",
        f"    stats socket {directory}/admin.sock mode 600 level admin expose-fd listeners",
        "    maxconn 4096",  # needs about twice as many descriptors; the agent may have 20,000
        "    nbthread 1",  # a lab node is a namespace on a shared machine, and every node runs one
        "    ssl-default-bind-options ssl-min-ver TLSv1.2",
        "defaults",
        "    mode http",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    timeout tunnel 1h",
        "    option forwardfor",
        "frontend ingress",
        "    bind :80",
        f"    bind :443 ssl crt {directory}/default.pem crt-list {directory}/certs.list alpn h2,http/1.1",
        "    http-request set-var(txn.proto) str(https) if { ssl_fc }",
        "    http-request set-var(txn.proto) str(http) if !{ ssl_fc }",
        "    http-request set-header X-Forwarded-Proto %[var(txn.proto)]",
        "    http-request set-header Forwarded for=%[src];proto=%[var(txn.proto)]",
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
    ]
    exact = sorted(h for h in table.hosts if h and not h.startswith("*."))
    for h in exact:
        head.append(f"    http-request set-var(txn.vhost) var(txn.host) if {{ var(txn.host) -m str {quote(h)} }}")
    for w in sorted((h for h in table.hosts if h.startswith("*.")), key=lambda w: (-len(w), w)):
        head.append(f"    http-request set-var(txn.vhost) str({w}) if !{{ var(txn.vhost) -m found }} "
                    f"{{ var(txn.host) -m reg {_wildcard_regex(w)} }}")
    servers: dict[str, list[str]] = {}
    missing = False

    def use(ref: BackendRef) -> str:
        nonlocal missing
        got = _backend(ref, services, endpoints)
        if got is None:
            problems.append(f"{ref}: no such Service or port; its routes answer 503")
            missing = True
            return MISSING
        name, addrs = got
        if name not in servers:
            servers[name] = place(addrs, previous.servers.get(name) if previous is not None else None)
        return name

    # named hosts first, then the rules for every host; each host's routes in precedence order
    for host in sorted(table.hosts, key=lambda h: (h == "", h)):
        for r in table.hosts[host]:
            head.append(f"    use_backend {use(r.backend)} if {_route_cond(r)}")
    head.append(f"    default_backend {use(table.default) if table.default is not None else NOT_FOUND}")

    def backends(filled: bool) -> list[str]:
        out = [f"backend {NOT_FOUND}", "    http-request return status 404 content-type text/plain "
               "string \"no Ingress rule matches this host and path\\n\""]
        if missing:
            out += [f"backend {MISSING}", "    http-request return status 503 content-type text/plain "
                    "string \"the Service or port this route names does not exist\\n\""]
        for name in sorted(n for n in servers if n not in gateway_backends):
            out += [f"backend {name}", "    balance roundrobin"] + server_lines(servers[name], filled)
        for name, head_lines in gateway_backends.items():
            out += head_lines + (server_lines(servers[name], filled) if name in servers else [])
        return out

    files: dict[str, bytes] = {}
    crt_list: list[str] = []
    by_secret: dict[str, list[str]] = {}
    for host, entry in sorted(table.tls.items()):
        if entry.secret:
            by_secret.setdefault(entry.secret, []).append(host)
    for key, hosts in sorted(by_secret.items()):
        secret = secrets.get(key)
        why = "no such Secret" if secret is None else tls_pair_error(secret)
        if why:
            problems.append(f"Secret {key}: {why}; {', '.join(hosts)} get the default certificate")
            continue
        assert secret is not None
        name = f"certs/{secret.namespace}_{secret.name}.pem"
        files[name] = secret.data["tls.crt"].rstrip(b"\n") + b"\n" + secret.data["tls.key"].rstrip(b"\n") + b"\n"
        crt_list.append(f"{directory}/{name} [alpn h2,http/1.1] {' '.join(hosts)}")
    files["certs.list"] = "".join(line + "\n" for line in crt_list).encode()
    frontends: list[str] = []
    gateway_backends: dict[str, list[str]] = {}
    if gateways is not None:
        frontends, blocks, gw_files, gw_problems = compile_gateways(gateways, endpoints, directory)
        for name, head_lines, weighted in blocks:
            gateway_backends[name] = head_lines
            if weighted is not None:
                servers[name] = place(weighted, previous.servers.get(name) if previous is not None else None)
        files.update(gw_files)
        problems += gw_problems
    text = "\n".join(head + frontends + backends(True)) + "\n"
    skeleton = "\n".join(head + frontends + backends(False)) + "\n"
    return ProxyConfig(text, skeleton, files, servers, list(dict.fromkeys(problems)))


def runtime_commands(old: ProxyConfig, new: ProxyConfig) -> list[str] | None:
    """The runtime API commands that turn `old`'s servers into `new`'s, or None when only a
    reload can (the skeletons differ: routes, backends, certificates or the number of slots)."""
    if old.skeleton != new.skeleton or old.files != new.files:
        return None
    return [c for name, slots in new.servers.items() for c in commands(name, old.servers[name], slots)]
