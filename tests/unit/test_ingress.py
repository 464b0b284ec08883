"""Ingress by value: validation, the route table's decisions, and the HAProxy configuration.

The configuration is checked three ways without root: against a golden file; by `haproxy -c`;
and by reading its host and routing lines back (a small interpreter of the few ACL forms the
compiler writes) and checking, for random Ingresses and requests, that HAProxy's first
matching `use_backend` is the backend the route table's own decision names. The integration
tests (tests/integration/test_ingress.py) check that HAProxy executes those forms as read here.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gingham.ingress import certs
from gingham.ingress.haproxy import MISSING, NOT_FOUND, compile_proxy, runtime_commands
from gingham.ingress.slots import place
from gingham.ingress.routes import BackendRef, build
from gingham.model.ingress import IngressError, parse_ingress, parse_secret, tls_pair_error
from gingham.model.services import Endpoint, parse_service

from ..helpers import golden
from ..helpers.haproxy import assert_haproxy_accepts


def ingress(name, rules=(), default=None, tls=(), created="2026-12-01T00:00:00Z", ns="shop", cls=None):
    spec = {"rules": [
        {**({"host": h} if h else {}), "http": {"paths": [
            {"path": p, "pathType": t, "backend": {"service": {"name": s, "port": {"number": 80}}}}
            for p, t, s in paths]}} for h, paths in rules]}
    if default:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
    if tls:
        spec["tls"] = [{"hosts": list(h), "secretName": s} for h, s in tls]
    if cls:
        spec["ingressClassName"] = cls
    return parse_ingress(ns, name, {"metadata": {"creationTimestamp": created}, "spec": spec})


SERVICES = {f"shop/{n}": parse_service("shop", n, {"spec": {"clusterIP": f"10.96.0.{20 + i}", "selector": {"app": n},
                                                            "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
                                       "10.96.0.0/16") for i, n in enumerate(("web", "api", "blog"))}
ENDPOINTS = {"shop/web": [Endpoint("10.244.0.5", "node-1", "shop/web-0", ports=(("http", "TCP", 8080),)),
                          Endpoint("10.244.1.5", "node-2", "shop/web-1", ports=(("http", "TCP", 8080),))],
             "shop/api": [Endpoint("10.244.1.9", "node-2", "shop/api-0", ports=(("http", "TCP", 8080),))]}


@pytest.mark.parametrize("spec,field", [
    ({}, "spec"),
    ({"rules": [{"host": "10.0.0.1", "http": {"paths": []}}]}, "spec.rules[0].host"),
    ({"rules": [{"host": "a.*.com"}]}, "spec.rules[0].host"),
    ({"rules": [{"host": "foo.com:80"}]}, "spec.rules[0].host"),
    ({"rules": [{"http": {"paths": [{"path": "a", "pathType": "Prefix",
                                     "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]},
     "spec.rules[0].http.paths[0].path"),
    ({"rules": [{"http": {"paths": [{"path": "/", "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]},
     "spec.rules[0].http.paths[0].pathType"),
    ({"rules": [{"http": {"paths": [{"path": "/", "pathType": "Regex",
                                     "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]},
     "spec.rules[0].http.paths[0].pathType"),
    ({"defaultBackend": {"service": {"name": "s", "port": {"number": 80, "name": "http"}}}},
     "spec.defaultBackend.service.port"),
    ({"defaultBackend": {"service": {"name": "s", "port": {"number": 0}}}}, "spec.defaultBackend.service.port.number"),
    ({"defaultBackend": {"resource": {"kind": "Bucket", "name": "b"}}}, "spec.defaultBackend.resource"),
    ({"defaultBackend": {"service": {"name": "s", "port": {"number": 80}}}, "tls": [{"hosts": ["*"]}]},
     "spec.tls[0].hosts[0]"),
])
def test_invalid_ingresses_are_refused_naming_the_field(spec, field):
    with pytest.raises(IngressError) as e:
        parse_ingress("shop", "bad", {"spec": spec})
    assert e.value.field == field


def test_tls_secrets_are_kept_as_given_and_judged_by_the_controller():
    with pytest.raises(IngressError, match="data.tls.crt: is not valid base64"):
        parse_secret("shop", "s", {"type": "kubernetes.io/tls", "data": {"tls.crt": "!!", "tls.key": ""}})
    with pytest.raises(IngressError, match=r"data\[tls.key\]"):
        parse_secret("shop", "s", {"type": "kubernetes.io/tls", "stringData": {"tls.crt": "x"}})
    junk = parse_secret("shop", "s", {"type": "kubernetes.io/tls", "stringData": {"tls.crt": "x", "tls.key": "y"}})
    assert tls_pair_error(junk) == "tls.crt is not a PEM certificate"
    a, b = certs.make_cert(["a.example.com"]), certs.make_cert(["b.example.com"])
    mixed = parse_secret("shop", "s", {"type": "kubernetes.io/tls", "stringData": {"tls.crt": a[0].decode(),
                                                                                   "tls.key": b[1].decode()}})
    assert tls_pair_error(mixed) == "tls.key is not the key of tls.crt"
    good = parse_secret("shop", "s", {"type": "kubernetes.io/tls", "stringData": {"tls.crt": a[0].decode(),
                                                                                  "tls.key": a[1].decode()}})
    assert tls_pair_error(good) == ""


def test_hosts_exact_then_wildcard_of_one_label_then_the_hostless_rules():
    t = build([ingress("a", [("foo.example.com", [("/", "Prefix", "web")]), ("*.example.com", [("/", "Prefix", "api")]),
                             ("", [("/", "Prefix", "blog")])])])
    assert t.select_host("foo.example.com") == "foo.example.com"
    assert t.select_host("FOO.example.com:8080") == "foo.example.com"
    assert t.select_host("bar.example.com") == "*.example.com"
    assert t.select_host("a.bar.example.com") == "" and t.select_host("example.com") == ""


def test_paths_exact_first_then_the_longest_prefix_by_element_across_ingresses():
    t = build([ingress("a", [("h.com", [("/foo", "Prefix", "web"), ("/foo/bar", "Exact", "api")])]),
               ingress("b", [("h.com", [("/foo/", "Prefix", "blog"), ("/foo/ba", "Prefix", "api")])],
                       created="2026-12-02T00:00:00Z")])
    def pick(path: str) -> str | None:
        ref, _ = t.match("h.com", path)
        return ref.service if ref else None
    assert pick("/foo/bar") == "api"            # Exact wins
    assert pick("/foo/bar/x") == "web"          # /foo/ba does not match /foo/bar/x by element; /foo does
    assert pick("/foo/ba/x") == "api"           # the longer prefix, from the other Ingress
    assert pick("/foo") == "web" and pick("/foobar") is None
    assert t.conflicts == ["shop/b: h.com Prefix /foo is already served by shop/a (older); ignored"]


def test_the_older_ingress_keeps_a_claim_and_the_defaultbackend():
    older = ingress("z-old", [("h.com", [("/", "Prefix", "web")])], default="web", created="2026-01-01T00:00:00Z")
    newer = ingress("a-new", [("h.com", [("/", "Prefix", "api")])], default="api", created="2026-06-01T00:00:00Z")
    t = build([newer, older])
    assert t.match("h.com", "/x")[0] == BackendRef("shop", "web", 80)
    assert t.match("other.com", "/")[0] == BackendRef("shop", "web", 80)  # the older one's defaultBackend
    assert len(t.conflicts) == 2


GOLDEN_DIR = "/etc/gingham/ingress"


def sample():
    shop = ingress("shop", [("shop.example.com", [("/", "Prefix", "web"), ("/api", "Prefix", "api"),
                                                  ("/exact", "Exact", "api"), ("/gone", "Prefix", "nowhere")]),
                            ("*.wild.example.com", [("/", "Prefix", "api")]), ("", [("/any", "Prefix", "blog")])],
                   tls=[(["shop.example.com"], "shop-tls"), (["*.wild.example.com"], "missing")])
    cert, key = certs.make_cert(["shop.example.com"])
    secret = parse_secret("shop", "shop-tls", {"type": "kubernetes.io/tls",
                                               "stringData": {"tls.crt": cert.decode(), "tls.key": key.decode()}})
    return build([shop]), {"shop/shop-tls": secret}


def test_the_configuration_against_its_golden_file_and_haproxy_c(tmp_path):
    table, secrets = sample()
    cfg = compile_proxy(table, SERVICES, ENDPOINTS, secrets, GOLDEN_DIR)
    golden.check("haproxy.cfg", cfg.text)
    assert cfg.problems == ["shop/nowhere:80: no such Service or port; its routes answer 503",
                            "Secret shop/missing: no such Secret; *.wild.example.com get the default certificate"]
    assert cfg.files["certs.list"] == f"{GOLDEN_DIR}/certs/shop_shop-tls.pem [alpn h2,http/1.1] shop.example.com\n".encode()
    assert_haproxy_accepts(lambda d: compile_proxy(table, SERVICES, ENDPOINTS, secrets, d), tmp_path)


def test_endpoints_keep_their_slots_and_change_over_the_runtime_api():
    assert place(["a", "b"], None) == ["a", "b", "", ""]
    assert place(["b", "c"], ["a", "b", "", ""]) == ["c", "b", "", ""]  # b stays in slot 2; c takes a free one
    assert place(["a", "b", "c", "d", "e"], ["a", "b", "c", "d"]) == ["a", "b", "c", "d", "e", "", "", ""]
    table, secrets = sample()
    old = compile_proxy(table, SERVICES, ENDPOINTS, secrets, GOLDEN_DIR)
    moved = dict(ENDPOINTS, **{"shop/web": [ENDPOINTS["shop/web"][1],
                                            Endpoint("10.244.2.7", "node-3", "shop/web-2", ports=(("http", "TCP", 8080),))]})
    new = compile_proxy(table, SERVICES, moved, secrets, GOLDEN_DIR, old)
    # slot 1 held web-0, which went: web-2 takes it (it is enabled already)
    assert runtime_commands(old, new) == ["set server be_shop_web_80/s1 addr 10.244.2.7 port 8080"]
    gone = compile_proxy(table, SERVICES, dict(ENDPOINTS, **{"shop/api": []}), secrets, GOLDEN_DIR, old)
    assert runtime_commands(old, gone) == ["set server be_shop_api_80/s1 state maint"]
    routed = build([ingress("shop", [("shop.example.com", [("/", "Prefix", "api")])])])
    assert runtime_commands(old, compile_proxy(routed, SERVICES, ENDPOINTS, secrets, GOLDEN_DIR, old)) is None


# -- the configuration read back ------------------------------------------------------------
_ACL = re.compile(r'(!?)\{ (var\(txn\.vhost\)|path|var\(txn\.host\)) -m (str|beg|found|reg)(?: "?([^"}]*?)"?)? \}')


def _holds(term: str, host: str, vhost: str | None, path: str) -> bool:
    neg, what, how, arg = _ACL.fullmatch(term).groups()  # type: ignore[union-attr]
    value = {"var(txn.vhost)": vhost, "var(txn.host)": host, "path": path}[what]
    ok = (value is not None if how == "found" else value is not None and (
        value == arg if how == "str" else value.startswith(arg) if how == "beg" else bool(re.fullmatch(arg, value))))
    return ok != bool(neg)


def _cond(cond: str, host: str, vhost: str | None, path: str) -> bool:
    return any(all(_holds(t, host, vhost, path) for t in re.findall(r"!?\{[^}]*\}", alt)) for alt in cond.split(" || "))


def haproxy_routes(text: str, host: str, path: str) -> str:
    """The backend HAProxy's frontend picks, read from the host and use_backend lines."""
    host = host.split(":")[0].lower()
    vhost: str | None = None
    for line in text.splitlines():
        line = line.strip()
        if m := re.fullmatch(r"http-request set-var\(txn\.vhost\) (var\(txn\.host\)|str\((\S+)\)) if (.*)", line):
            if _cond(m[3], host, vhost, path):
                vhost = host if m[2] is None else m[2]
        elif m := re.fullmatch(r"use_backend (\S+) if (.*)", line):
            if _cond(m[2], host, vhost, path):
                return m[1]
        elif m := re.fullmatch(r"default_backend (\S+)", line):
            return m[1]
    raise AssertionError("no default_backend")


hosts = st.sampled_from(["a.com", "b.a.com", "*.a.com", "x.b.com", "*.b.com", ""])
paths = st.sampled_from(["/", "/a", "/a/", "/a/b", "/ab", "/a/b/c", "/b"])
rules = st.lists(st.tuples(hosts, st.lists(st.tuples(paths, st.sampled_from(["Exact", "Prefix",
                                                                               "ImplementationSpecific"]),
                                                     st.sampled_from(["web", "api", "blog", "nowhere"])),
                                           min_size=1, max_size=3)), max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(rules, st.sampled_from([None, "web", "api"])), min_size=1, max_size=3),
       st.sampled_from(["a.com", "B.A.com:80", "c.a.com", "x.b.com", "y.b.com", "z.c.com", "a.b.com"]),
       st.sampled_from(["/", "/a", "/a/", "/a/b", "/ab", "/a/b/c", "/a/bc", "/b/x"]))
def test_haproxy_picks_the_backend_the_route_table_decides(spec, host, path):
    ings = [ingress(f"i{n}", r, d, created=f"2026-12-0{n + 1}T00:00:00Z") for n, (r, d) in enumerate(spec)
            if r or d]
    if not ings:
        return
    table = build(ings)
    cfg = compile_proxy(table, SERVICES, ENDPOINTS, {}, GOLDEN_DIR)
    ref, _ = table.match(host, path)
    expected = NOT_FOUND if ref is None else MISSING if ref.service == "nowhere" else f"be_shop_{ref.service}_80"
    assert haproxy_routes(cfg.text, host, path) == expected


# kubernetes-sigs/ingress-controller-conformance, features/path_rules.feature: its Ingress and
# every request it sends, with the service that must answer (None: 404)
CONFORMANCE = ingress("path-rules", [
    ("exact-path-rules", [("/foo", "Exact", "foo-exact")]),
    ("prefix-path-rules", [("/foo", "Prefix", "foo-prefix"), ("/aaa/bbb", "Prefix", "aaa-slash-bbb-prefix"),
                           ("/aaa", "Prefix", "aaa-prefix")]),
    ("mixed-path-rules", [("/foo", "Prefix", "foo-prefix"), ("/foo", "Exact", "foo-exact")]),
    ("trailing-slash-path-rules", [("/aaa/bbb/", "Prefix", "aaa-slash-bbb-prefix"), ("/foo/", "Exact", "foo-exact")]),
])


@pytest.mark.parametrize("host,path,service", [
    ("exact-path-rules", "/foo", "foo-exact"),
    ("exact-path-rules", "/foo/", None),            # Exact does not match a trailing slash
    ("exact-path-rules", "/FOO", None),             # case sensitive
    ("exact-path-rules", "/bar", None),
    ("prefix-path-rules", "/foo", "foo-prefix"),
    ("prefix-path-rules", "/foo/", "foo-prefix"),   # the request's trailing slash is ignored
    ("prefix-path-rules", "/FOO", None),
    ("prefix-path-rules", "/aaa/bbb", "aaa-slash-bbb-prefix"),      # the longest path
    ("prefix-path-rules", "/aaa/bbb/ccc", "aaa-slash-bbb-prefix"),  # and its subpaths
    ("prefix-path-rules", "/aaa/ccc", "aaa-prefix"),
    ("prefix-path-rules", "/aaaccc", None),         # by element, not by string prefix
    ("mixed-path-rules", "/foo", "foo-exact"),      # Exact is preferred
    ("trailing-slash-path-rules", "/aaa/bbb", "aaa-slash-bbb-prefix"),  # the rule's trailing slash is ignored
    ("trailing-slash-path-rules", "/aaa/bbb/", "aaa-slash-bbb-prefix"),
    ("trailing-slash-path-rules", "/foo", None),    # an Exact rule's trailing slash is kept
])
def test_the_ingress_conformance_path_rules(host, path, service):
    table = build([CONFORMANCE])
    ref, _ = table.match(host, path)
    assert (ref.service if ref else None) == service
    services = {f"shop/{n}": parse_service("shop", n, {"spec": {"clusterIP": f"10.96.1.{i + 1}", "selector": {"a": n},
                                                                "ports": [{"port": 80}]}}, "10.96.0.0/16")
                for i, n in enumerate(("foo-exact", "foo-prefix", "aaa-slash-bbb-prefix", "aaa-prefix"))}
    cfg = compile_proxy(table, services, {}, {}, GOLDEN_DIR)
    assert haproxy_routes(cfg.text, host, path) == (f"be_shop_{service}_80" if service else NOT_FOUND)
