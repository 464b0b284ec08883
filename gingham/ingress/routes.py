"""Pure: the served Ingresses -> one route table, and the request -> route decision.

The decision, as ingress-nginx and the Ingress conformance features make it:

1. The host: a rule whose host equals the request's Host (without its port, lowercased)
   wins; else a wildcard rule `*.example.com`, which matches exactly one more label; else
   the rules without a host. A host that matched keeps its own paths: a path it lacks does
   not fall through to the rules without a host.
2. The path, among every Ingress's paths for that host: Exact before Prefix, the longest
   Prefix first. Prefix matches by path element: `/foo` (or `/foo/`: a trailing slash is
   ignored) matches `/foo` and `/foo/bar`, not `/foobar`. ImplementationSpecific is Prefix
   here (ingress-nginx's default treats it so too).
3. Nothing matched: the oldest served Ingress's `defaultBackend`; without one, 404.

Two Ingresses claiming the same host, path type and path: the older (creationTimestamp,
then namespace/name) keeps it, as ingress-nginx does; the other's claim is reported in
`conflicts`. The same rule decides which Secret serves a TLS host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model.ingress import Backend, Ingress, wildcard_matches


@dataclass(frozen=True)
class BackendRef:
    namespace: str
    service: str
    port: int | str

    @classmethod
    def of(cls, namespace: str, b: Backend) -> BackendRef:
        return cls(namespace, b.service, b.port)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service}:{self.port}"


@dataclass(frozen=True)
class Route:
    host: str   # "" for every host
    kind: str   # "Exact" or "Prefix"
    path: str   # a Prefix without its trailing slash ("/" stays)
    backend: BackendRef
    owner: str  # the Ingress, namespace/name

    def matches(self, path: str) -> bool:
        if self.kind == "Exact":
            return path == self.path
        return self.path == "/" or path == self.path or path.startswith(self.path + "/")


@dataclass(frozen=True)
class TLSHost:
    host: str
    secret: str  # namespace/name, "" for the default certificate
    owner: str


@dataclass
class RouteTable:
    hosts: dict[str, list[Route]] = field(default_factory=dict)  # host -> routes in precedence order
    default: BackendRef | None = None
    default_owner: str = ""
    tls: dict[str, TLSHost] = field(default_factory=dict)        # host -> who serves its certificate
    conflicts: list[str] = field(default_factory=list)

    def backends(self) -> list[BackendRef]:
        seen = {r.backend: None for rs in self.hosts.values() for r in rs}
        if self.default is not None:
            seen[self.default] = None
        return list(seen)

    def select_host(self, host: str) -> str | None:
        """Which host's routes a request's Host header picks (None: no rule's host, nor a catch-all)."""
        h = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        h = h.lower().rstrip(".")
        if h in self.hosts and not h.startswith("*."):
            return h
        wild = [w for w in self.hosts if w.startswith("*.") and wildcard_matches(w, h)]
        if wild:
            return wild[0]
        return "" if "" in self.hosts else None

    def match(self, host: str, path: str) -> tuple[BackendRef | None, Route | None]:
        """The backend a request goes to, and the route that sent it there (None: the default)."""
        picked = self.select_host(host)
        for r in self.hosts.get(picked, []) if picked is not None else []:
            if r.matches(path):
                return r.backend, r
        return self.default, None


def _order(ing: Ingress) -> tuple[str, str]:
    return (ing.created or "~", ing.key)  # no timestamp sorts after every timestamp


def build(ingresses: list[Ingress]) -> RouteTable:
    t = RouteTable()
    claimed: dict[tuple[str, str, str], Route] = {}
    for ing in sorted(ingresses, key=_order):
        if ing.default_backend is not None:
            if t.default is None:
                t.default, t.default_owner = BackendRef.of(ing.namespace, ing.default_backend), ing.key
            else:
                t.conflicts.append(f"{ing.key}: defaultBackend ignored, {t.default_owner} is older and has one")
        for rule in ing.rules:
            t.hosts.setdefault(rule.host, [])  # a host without paths is still this host (its default serves it)
            for p in rule.paths:
                kind = "Exact" if p.type == "Exact" else "Prefix"
                path = p.path if kind == "Exact" else (p.path.rstrip("/") or "/")
                route = Route(rule.host, kind, path, BackendRef.of(ing.namespace, p.backend), ing.key)
                was = claimed.get((rule.host, kind, path))
                if was is not None:
                    if was.owner != ing.key:
                        t.conflicts.append(f"{ing.key}: {rule.host or '*'} {kind} {path} is already served by "
                                           f"{was.owner} (older); ignored")
                    continue
                claimed[(rule.host, kind, path)] = route
                t.hosts.setdefault(rule.host, []).append(route)
        for entry in ing.tls:
            for host in entry.hosts:
                if host in t.tls:
                    if t.tls[host].owner != ing.key:
                        t.conflicts.append(f"{ing.key}: TLS for {host} is already served by {t.tls[host].owner} "
                                           "(older); ignored")
                    continue
                t.tls[host] = TLSHost(host, f"{ing.namespace}/{entry.secret}" if entry.secret else "", ing.key)
    for routes in t.hosts.values():
        # Exact first, then the longest Prefix; sorted() keeps the claim order among equals
        routes.sort(key=lambda r: (r.kind != "Exact", -len(r.path)))
    return t
