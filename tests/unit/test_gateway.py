"""Gateway API by value: validation, hostname intersection, attachment and the status reasons,
weights, and the compiled frontends (golden file, haproxy -c)."""

from __future__ import annotations


import pytest

from gingham.ingress import certs
from gingham.ingress.gateway import World, attach, gateway_status, route_status, service_name
from gingham.ingress.haproxy import compile_proxy
from gingham.ingress.routes import build
from gingham.model.gateway import (GatewayError, intersect, parse_gateway, parse_http_route,
                                   parse_reference_grant)
from gingham.model.ingress import parse_secret
from gingham.model.services import Endpoint, parse_service

from ..helpers import golden
from ..helpers.haproxy import assert_haproxy_accepts

GW = {"spec": {"gatewayClassName": "gingham", "listeners": [
    {"name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": {"namespaces": {"from": "Selector",
                                                                                      "selector": {"matchLabels": {"team": "a"}}}}},
    {"name": "web", "protocol": "HTTP", "port": 8080, "hostname": "*.example.com"},
    {"name": "tls", "protocol": "HTTPS", "port": 443, "hostname": "secure.example.com",
     "tls": {"certificateRefs": [{"name": "cert"}]}}]}}


def route(ns, name, parents, hostnames=(), backends=(("web", 8080, 1, None),), **rule):
    return parse_http_route(ns, name, {"spec": {
        "parentRefs": [dict(p) for p in parents], "hostnames": list(hostnames),
        "rules": [{**rule, "backendRefs": [{"name": n, "port": p, "weight": w, **({"namespace": bns} if bns else {})}
                                           for n, p, w, bns in backends]}]}})


@pytest.mark.parametrize("kind,spec,field", [
    ("gw", {"gatewayClassName": "gingham", "listeners": [{"name": "a", "protocol": "TCP", "port": 9}]},
     "spec.listeners[0].protocol"),
    ("gw", {"gatewayClassName": "gingham", "listeners": [{"name": "a", "protocol": "HTTPS", "port": 443}]},
     "spec.listeners[0].tls.certificateRefs"),
    ("gw", {"gatewayClassName": "gingham", "listeners": [{"name": "a", "protocol": "HTTP", "port": 80},
                                                         {"name": "a", "protocol": "HTTP", "port": 81}]},
     "spec.listeners[1].name"),
    ("gw", {"listeners": []}, "spec.gatewayClassName"),
    ("route", {"rules": [{"matches": [{"path": {"type": "RegularExpression", "value": "/.*"}}]}]},
     "spec.rules[0].matches[0].path.type"),
    ("route", {"rules": [{"matches": [{"method": "FETCH"}]}]}, "spec.rules[0].matches[0].method"),
    ("route", {"rules": [{"filters": [{"type": "RequestMirror"}]}]}, "spec.rules[0].filters[0].type"),
    ("route", {"rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {}},
                                      {"type": "URLRewrite", "urlRewrite": {}}]}]}, "spec.rules[0].filters"),
    ("route", {"hostnames": ["10.0.0.1"]}, "spec.hostnames[0]"),
])
def test_what_gingham_does_not_serve_is_refused_naming_the_field(kind, spec, field):
    with pytest.raises(GatewayError) as e:
        (parse_gateway if kind == "gw" else parse_http_route)("ns", "x", {"spec": spec})
    assert e.value.field == field


@pytest.mark.parametrize("listener,route_hosts,got", [
    ("", (), [""]),
    ("foo.example.com", (), ["foo.example.com"]),
    ("*.example.com", ("foo.example.com", "a.b.example.com", "example.com", "foo.other.com"),
     ["foo.example.com", "a.b.example.com"]),  # a Gateway API wildcard matches any number of labels
    ("foo.example.com", ("*.example.com",), ["foo.example.com"]),
    ("*.example.com", ("*.foo.example.com",), ["*.foo.example.com"]),
    ("foo.example.com", ("bar.example.com",), []),
])
def test_hostnames_intersect_as_the_spec_says(listener, route_hosts, got):
    assert intersect(listener, route_hosts) == got


SERVICES = {k: parse_service(*k.split("/"), {"spec": {"clusterIP": ip, "selector": {"app": k}, "ports": [{"port": 8080}]}},
                             "10.96.0.0/16")
            for k, ip in (("a/web", "10.96.0.20"), ("a/v2", "10.96.0.21"), ("b/echo", "10.96.0.22"))}
SERVICES["gingham-system/gw-a-main"] = parse_service("gingham-system", "gw-a-main", {"spec": {
    "type": "LoadBalancer", "ports": [{"name": f"port-{p}", "port": p, "targetPort": 30000 + i, "nodePort": 30000 + i}
                                      for i, p in enumerate((80, 443, 8080))]}}, "10.96.0.0/16")


def world(routes, grants=(), secrets=None):
    cert = certs.make_cert(["secure.example.com"])
    secrets = {"a/cert": parse_secret("a", "cert", {"type": "kubernetes.io/tls", "stringData": {
        "tls.crt": cert[0].decode(), "tls.key": cert[1].decode()}})} if secrets is None else secrets
    gw = parse_gateway("a", "main", GW)
    return attach(World({gw.key: gw}, set(), list(routes), list(grants), SERVICES, secrets,
                        {"a": {"team": "a"}, "b": {"team": "b"}}))


def reasons(w, key):
    return [{c["type"]: c["reason"] for c in p["conditions"]} for p in route_status(w, key, 1, "now")["parents"]]


def test_attachment_and_the_reasons_the_conformance_suite_reads():
    w = world([
        route("a", "ok", [{"name": "main", "sectionName": "http"}]),
        route("b", "other-team", [{"name": "main", "namespace": "a", "sectionName": "http"}]),
        route("a", "no-listener", [{"name": "main", "sectionName": "nope"}]),
        route("a", "no-gateway", [{"name": "gone"}]),
        route("a", "wrong-host", [{"name": "main", "sectionName": "web"}], hostnames=["foo.other.com"]),
        route("a", "cross", [{"name": "main", "sectionName": "http"}], backends=[("echo", 8080, 1, "b")]),
        route("a", "missing", [{"name": "main", "sectionName": "http"}], backends=[("nope", 8080, 1, None)]),
        route("a", "bad-port", [{"name": "main", "sectionName": "http"}], backends=[("web", 9999, 1, None)]),
    ])
    assert reasons(w, "a/ok") == [{"Accepted": "Accepted", "ResolvedRefs": "ResolvedRefs"}]
    assert reasons(w, "b/other-team")[0]["Accepted"] == "NotAllowedByListeners"  # the selector picks team=a only
    assert reasons(w, "a/no-listener")[0]["Accepted"] == "NoMatchingParent"
    assert reasons(w, "a/no-gateway")[0]["Accepted"] == "NoMatchingParent"
    assert reasons(w, "a/wrong-host")[0]["Accepted"] == "NoMatchingListenerHostname"
    assert reasons(w, "a/cross")[0] == {"Accepted": "Accepted", "ResolvedRefs": "RefNotPermitted"}
    assert reasons(w, "a/missing")[0]["ResolvedRefs"] == "BackendNotFound"
    assert reasons(w, "a/bad-port")[0]["ResolvedRefs"] == "BackendNotFound"
    grant = parse_reference_grant("b", "g", {"spec": {"from": [{"group": "gateway.networking.k8s.io",
                                                                "kind": "HTTPRoute", "namespace": "a"}],
                                                      "to": [{"group": "", "kind": "Service"}]}})
    granted = world([route("a", "cross", [{"name": "main", "sectionName": "http"}],
                           backends=[("echo", 8080, 1, "b")])], [grant])
    assert reasons(granted, "a/cross")[0]["ResolvedRefs"] == "ResolvedRefs"
    st = gateway_status(w, "a/main", "192.168.200.201", 1, "now")
    attached = {ln["name"]: ln["attachedRoutes"] for ln in st["listeners"]}
    assert attached == {"http": 4, "web": 0, "tls": 0}
    assert st["addresses"] == [{"type": "IPAddress", "value": "192.168.200.201"}]
    unaddressed = gateway_status(w, "a/main", "", 1, "now")
    assert {c["type"]: c["reason"] for c in unaddressed["conditions"]}["Programmed"] == "AddressNotAssigned"


def test_a_listener_whose_certificate_is_unusable_says_why():
    w = world([], secrets={})
    (tls,) = [ln for ln in gateway_status(w, "a/main", "192.168.200.201", 1, "now")["listeners"] if ln["name"] == "tls"]
    conds = {c["type"]: (c["status"], c["reason"]) for c in tls["conditions"]}
    assert conds["ResolvedRefs"] == ("False", "InvalidCertificateRef") and conds["Programmed"][0] == "False"


def test_a_long_gateway_name_gets_a_short_service_name():
    assert service_name("a", "main") == "gw-a-main"
    long = service_name("n" * 40, "g" * 40)
    assert len(long) <= 63 and long.startswith("gw-") and long != service_name("n" * 40, "g" * 39 + "h")


def test_weights_give_each_service_its_share_whatever_its_endpoints():
    eps = {"a/web": [Endpoint(f"10.244.0.{i}", "node-1", f"a/web-{i}", ports=(("", "TCP", 8080),)) for i in (2, 3, 4)],
           "a/v2": [Endpoint("10.244.1.2", "node-2", "a/v2-0", ports=(("", "TCP", 8080),))]}
    w = world([route("a", "split", [{"name": "main", "sectionName": "http"}],
                     backends=[("web", 8080, 3, None), ("v2", 8080, 1, None)])])
    cfg = compile_proxy(build([]), SERVICES, eps, {}, "/etc/gingham/ingress", gateways=w)
    weights = [int(line.split()[-1]) for line in cfg.text.splitlines() if " weight " in line]
    assert weights == [256, 256, 256, 256]  # 3/3 per web pod, 1/1 for v2: a quarter of the requests each


def test_gateway_endpoints_change_over_the_runtime_api_too():
    from gingham.ingress.haproxy import runtime_commands
    one = {"a/web": [Endpoint("10.244.0.2", "node-1", "a/web-0", ports=(("", "TCP", 8080),))],
           "a/v2": [Endpoint("10.244.1.2", "node-2", "a/v2-0", ports=(("", "TCP", 8080),))]}
    two = dict(one, **{"a/web": one["a/web"] + [Endpoint("10.244.0.3", "node-1", "a/web-1", ports=(("", "TCP", 8080),))]})
    w = world([route("a", "split", [{"name": "main", "sectionName": "http"}],
                     backends=[("web", 8080, 1, None), ("v2", 8080, 1, None)])])
    old = compile_proxy(build([]), SERVICES, one, {}, "/etc/gingham/ingress", gateways=w)
    new = compile_proxy(build([]), SERVICES, two, {}, "/etc/gingham/ingress", old, w)
    be = "rt_a_main_80_a_split_0_0"
    # web's two pods now share web's half: 128 each; v2's one pod keeps 256; the new pod takes a free slot
    assert runtime_commands(old, new) == [f"set server {be}/s1 weight 128", f"set server {be}/s3 addr 10.244.0.3 port 8080",
                                          f"set server {be}/s3 weight 128", f"set server {be}/s3 state ready"]


def test_the_gateway_configuration_against_its_golden_file_and_haproxy_c(tmp_path):
    eps = {"a/web": [Endpoint("10.244.0.2", "node-1", "a/web-0", ports=(("", "TCP", 8080),))],
           "b/echo": [Endpoint("10.244.1.3", "node-2", "b/echo-0", ports=(("", "TCP", 8080),))]}
    routes = [
        route("a", "app", [{"name": "main", "sectionName": "http"}], hostnames=["app.example.com"],
              matches=[{"path": {"type": "Exact", "value": "/exact"}}, {"headers": [{"name": "X-Env", "value": "b"}],
                                                                       "queryParams": [{"name": "q", "value": "1"}],
                                                                       "method": "GET"}],
              filters=[{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-A", "value": "1"}]}},
                       {"type": "URLRewrite", "urlRewrite": {"hostname": "in.example.com",
                                                             "path": {"type": "ReplacePrefixMatch",
                                                                      "replacePrefixMatch": "/"}}}]),
        route("a", "moved", [{"name": "main", "sectionName": "web"}], hostnames=["old.example.com"], backends=[],
              filters=[{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]),
        route("a", "secure", [{"name": "main", "sectionName": "tls"}]),
    ]
    cfg = compile_proxy(build([]), SERVICES, eps, {}, "/etc/gingham/ingress", gateways=world(routes))
    golden.check("haproxy-gateway.cfg", cfg.text)
    assert_haproxy_accepts(lambda d: compile_proxy(build([]), SERVICES, eps, {}, d, gateways=world(routes)), tmp_path)
