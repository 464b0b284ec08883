"""Pure: the attached HTTPRoutes of each Gateway -> HAProxy frontends and backends.

A frontend per Gateway and listener port binds the port its Service sends that listener's
traffic to (gateway.py). It picks the host (an exact hostname, else the longest wildcard
suffix: in Gateway API `*.example.com` matches any number of labels, else the rules for any
host), then the first match in the specification's precedence order: an Exact path, then the
longest PathPrefix (by path element, a trailing slash ignored), then a method, then the most
header matches, then the most query parameter matches; ties go to the older route (then
namespace/name), then rule and match order.

Each rule match gets a backend holding its filters in the specification's order of effect:
RequestHeaderModifier and URLRewrite change the request, RequestRedirect answers it,
ResponseHeaderModifier changes the response; the servers are the backendRefs' endpoints,
weighted so that each Service gets its share (weight / sum of weights) whatever its number of
endpoints, in slots (slots.py): endpoint and weight changes go over the runtime API, as the
Ingress backends' do. A rule whose backendRefs do not resolve, or that has none, answers 500,
as the conformance suite expects.
"""

from __future__ import annotations

from typing import Mapping

from ..model.gateway import Filter, Match
from ..model.services import Endpoint, usable
from ..model.ingress import SERVICE_NAMESPACE
from .gateway import Attached, World, listener_of, service_name
from .quoting import quote as _q

GATEWAY_NOT_FOUND = "gingham-no-route"


def _regex_literal(s: str) -> str:
    """A path as a regex of HAProxy's (no backslashes: each special character in a class)."""
    return "".join(f"[{c}]" if c in ".+*?()[]{}|^$" else c for c in s)


def _match_cond(host_cond: str, m: Match) -> str:
    extra = ""
    if m.method:
        extra += f" {{ method {m.method} }}"
    for name, value in m.headers:
        extra += f" {{ req.hdr({name}) -m str {_q(value)} }}"
    for name, value in m.query:
        extra += f" {{ url_param({name}) -m str {_q(value)} }}"
    if m.path_type == "Exact":
        return f"{host_cond} {{ path -m str {_q(m.path)} }}{extra}"
    prefix = m.path.rstrip("/") or "/"
    if prefix == "/":
        return f"{host_cond}{extra}"
    return (f"{host_cond} {{ path -m str {_q(prefix)} }}{extra} || "
            f"{host_cond} {{ path -m beg {_q(prefix + '/')} }}{extra}")


def _precedence(m: Match, a: Attached, match_index: int) -> tuple[object, ...]:
    exact = m.path_type == "Exact"
    length = len(m.path if exact else (m.path.rstrip("/") or "/"))
    return (not exact, -length, not m.method, -len(m.headers), -len(m.query), a.route.created or "~", a.route.key,
            a.rule, match_index)


def _filters(filters: tuple[Filter, ...], m: Match, scheme: str, port: int) -> list[str]:
    out: list[str] = []
    for f in filters:
        if f.type == "RequestHeaderModifier":
            out += [f"    http-request set-header {n} {_q(v)}" for n, v in f.set]
            out += [f"    http-request add-header {n} {_q(v)}" for n, v in f.add]
            out += [f"    http-request del-header {n}" for n in f.remove]
    for f in filters:
        if f.type in ("URLRewrite", "RequestRedirect") and f.path_type:
            if f.path_type == "ReplaceFullPath":
                out.append(f"    http-request set-path {_q(f.path)}")
            else:
                prefix = m.path.rstrip("/") if m.path_type != "Exact" else m.path
                new = f.path.rstrip("/")
                # /prefix and /prefix/rest -> new and new/rest; with "/" for new: / and /rest
                pattern = f"^{_regex_literal(prefix)}(/.*)?$" if new else f"^{_regex_literal(prefix)}/?(.*)$"
                out.append(f"    http-request replace-path {pattern} {_q((new or '/') + chr(92) + '1')}")
        if f.type == "URLRewrite" and f.hostname:
            out.append(f"    http-request set-header Host {_q(f.hostname)}")
    for f in filters:
        if f.type == "RequestRedirect":
            to_scheme = f.scheme or scheme
            to_port = f.port or ({"http": 80, "https": 443}[f.scheme] if f.scheme else port)
            host = f.hostname or "%[req.hdr(host),field(1,:)]"
            shown = "" if to_port == {"http": 80, "https": 443}[to_scheme] else f":{to_port}"
            base = f"{to_scheme}://{host}{shown}%[path]"
            out.append(f"    http-request redirect location {_q(base + '?%[query]')} code {f.status} if {{ query -m found }}")
            out.append(f"    http-request redirect location {_q(base)} code {f.status}")
    for f in filters:
        if f.type == "ResponseHeaderModifier":
            out += [f"    http-response set-header {n} {_q(v)}" for n, v in f.set]
            out += [f"    http-response add-header {n} {_q(v)}" for n, v in f.add]
            out += [f"    http-response del-header {n}" for n in f.remove]
    return out


def _servers(w: World, a: Attached, endpoints: Mapping[str, list[Endpoint]]) -> list[str] | None:
    """The slots' contents ("ip:port weight N") of a rule's resolvable backendRefs, each Service its
    share of the weight; None when no backendRef with a weight resolves (the rule answers 500)."""
    groups, resolved = [], False
    for b in a.route.rules[a.rule].backends:
        if b.weight == 0 or w.backend_problem(a.route, b) is not None:
            continue
        resolved = True
        svc = w.services[f"{b.namespace}/{b.name}"]
        sp = next(p for p in svc.ports if p.port == b.port and p.protocol == "TCP")
        addrs = [f"{e.ip}:{port}" for e in usable(list(endpoints.get(svc.key, []))) if (port := e.port_for(sp))]
        if addrs:
            groups.append((b.weight / len(addrs), addrs))
    if not resolved:
        return None
    top = max((share for share, _ in groups), default=1.0)
    return [f"{addr} weight {max(1, round(256 * share / top))}" for share, addrs in groups for addr in addrs]


Block = tuple[str, list[str], "list[str] | None"]  # backend, its lines before the servers, its servers


def compile_gateways(w: World, endpoints: Mapping[str, list[Endpoint]],
                     directory: str) -> tuple[list[str], list[Block], dict[str, bytes], list[str]]:
    """(frontend lines, backends, files, problems) for every Gateway the world holds; the
    backends' servers go into slots (slots.py), so their endpoints change without a reload."""
    lines: list[str] = []
    files: dict[str, bytes] = {}
    problems: list[str] = []
    backends: list[Block] = []
    for gkey, gw in sorted(w.gateways.items()):
        svc = w.services.get(f"{SERVICE_NAMESPACE}/{service_name(gw.namespace, gw.name)}")
        if svc is None:
            problems.append(f"Gateway {gkey}: its Service is not written yet")
            continue
        targets = {p.port: p.target_port for p in svc.ports}
        by_port: dict[int, list[str]] = {}
        for ln in gw.listeners:
            by_port.setdefault(ln.port, []).append(ln.name)
        for port, names in sorted(by_port.items()):
            target = targets.get(port)
            if not isinstance(target, int) or target == port and port < 1024:
                problems.append(f"Gateway {gkey}: port {port} has no node port yet")
                continue
            listeners = [listener_of(gw, n) for n in names]
            https = any(ln.protocol == "HTTPS" for ln in listeners)
            fe = f"gw_{gw.namespace}_{gw.name}_{port}"
            lines.append(f"frontend {fe}")
            if https:
                crt = []
                for ln in listeners:
                    ok, _, _ = w.listener_refs[(gkey, ln.name)]
                    if ok and ln.certificates:
                        ns, name = ln.certificates[0]
                        s = w.secrets[f"{ns}/{name}"]
                        fname = f"certs/gw_{ns}_{name}.pem"
                        files[fname] = s.data["tls.crt"].rstrip(b"\n") + b"\n" + s.data["tls.key"].rstrip(b"\n") + b"\n"
                        crt.append(f"{directory}/{fname} [alpn h2,http/1.1]" + (f" {ln.hostname}" if ln.hostname else ""))
                files[f"{fe}.list"] = "".join(c + "\n" for c in crt).encode()
                lines.append(f"    bind :{target} ssl crt {directory}/default.pem crt-list {directory}/{fe}.list "
                             "alpn h2,http/1.1")
            else:
                lines.append(f"    bind :{target}")
            scheme = "https" if https else "http"
            lines += [f"    http-request set-header X-Forwarded-Proto {scheme}",
                      f"    http-request set-header Forwarded for=%[src];proto={scheme}",
                      "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower"]
            entries = []
            for ln in listeners:
                for a in w.attached.get((gkey, ln.name), []):
                    for host in a.hostnames:
                        for mi, m in enumerate(a.route.rules[a.rule].matches):
                            entries.append((host, m, a, mi))
            hosts = {h for h, _, _, _ in entries}
            for h in sorted(x for x in hosts if x and not x.startswith("*.")):
                lines.append(f"    http-request set-var(txn.vhost) var(txn.host) if {{ var(txn.host) -m str {_q(h)} }}")
            for h in sorted((x for x in hosts if x.startswith("*.")), key=lambda x: (-len(x), x)):
                rx = "^.+" + h[1:].replace(".", "[.]") + "$"
                lines.append(f"    http-request set-var(txn.vhost) str({h}) if !{{ var(txn.vhost) -m found }} "
                             f"{{ var(txn.host) -m reg {rx} }}")
            made: set[str] = set()
            for host in sorted(hosts, key=lambda h: (h == "", h)):
                cond = f"{{ var(txn.vhost) -m str {_q(host)} }}" if host else "!{ var(txn.vhost) -m found }"
                mine = sorted((e for e in entries if e[0] == host), key=lambda e: _precedence(e[1], e[2], e[3]))
                for _, m, a, mi in mine:
                    be = f"rt_{gw.namespace}_{gw.name}_{port}_{a.route.namespace}_{a.route.name}_{a.rule}_{mi}"
                    lines.append(f"    use_backend {be} if {_match_cond(cond, m)}")
                    if be in made:
                        continue
                    made.add(be)
                    rule = a.route.rules[a.rule]
                    body = [f"backend {be}", "    balance roundrobin"]
                    body += _filters(rule.filters, m, scheme, port)
                    servers = _servers(w, a, endpoints)
                    if servers is None and not any(f.type == "RequestRedirect" for f in rule.filters):
                        body.append("    http-request return status 500 content-type text/plain "
                                    "string \"no backend of this route resolves\\n\"")
                    backends.append((be, body, servers))
            lines.append(f"    default_backend {GATEWAY_NOT_FOUND}")
    if lines:
        backends.append((GATEWAY_NOT_FOUND, [f"backend {GATEWAY_NOT_FOUND}", "    http-request return status 404 "
                                             "content-type text/plain string \"no route matches\\n\""], None))
    return lines, backends, files, problems

