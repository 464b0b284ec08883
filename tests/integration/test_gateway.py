"""Gateway API on HAProxy, end to end: curl from `external` to a Gateway's own address.

Facts from the Gateway API conformance tests (conformance/tests, GATEWAY-HTTP core): the
route matches path (Exact, PathPrefix), headers, query parameters and method in the spec's
precedence; filters RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect and
URLRewrite; weights; cross-namespace backends only with a ReferenceGrant; a backend that does
not resolve answers 500; the status conditions and reasons the suite reads.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from gingham.ingress import certs
from gingham.lab.cluster import Lab

from ..helpers.lab import manifest
from .conftest import shared_lab

CA = certs.make_ca()
ROUTE = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"

CLUSTER = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: gw}
spec: {nodes: 2, loadBalancerPool: 192.168.200.200-192.168.200.205}
---
apiVersion: v1
kind: Namespace
metadata: {name: gw, labels: {team: edge}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: gw, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: gw, labels: {app: api}}
spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: v2-0, namespace: gw, labels: {app: v2}}
spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-0, namespace: other, labels: {app: echo}}
spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: gw}
spec: {selector: {app: web}, ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: gw}
spec: {selector: {app: api}, ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: v2, namespace: gw}
spec: {selector: {app: v2}, ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: other}
spec: {selector: {app: echo}, ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: private, namespace: other}
spec: {selector: {app: echo}, ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: main, namespace: gw}
spec:
  gatewayClassName: gingham
  listeners:
  - {name: http, protocol: HTTP, port: 80, allowedRoutes: {namespaces: {from: All}}}
  - name: https
    protocol: HTTPS
    port: 443
    hostname: secure.example.com
    tls: {certificateRefs: [{name: secure-tls}]}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: let-gw-in, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gw}]
  to: [{group: "", kind: Service, name: echo}]
---
""" + ROUTE + """metadata: {name: app, namespace: gw}
spec:
  parentRefs: [{name: main, sectionName: http}]
  hostnames: [app.example.com]
  rules:
  - matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [{name: api, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /api/}}]
    backendRefs: [{name: api, port: 8080}]
  - matches: [{headers: [{name: X-Env, value: canary}]}]
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{queryParams: [{name: v, value: "2"}]}]
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{method: POST}]
    backendRefs: [{name: api, port: 8080}]
  - backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: new.example.com, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /headers}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-Set, value: set}], add: [{name: X-Add, value: added}], remove: [X-Remove]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: X-Reply, value: hello}]}
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /weights}}]
    backendRefs: [{name: web, port: 8080, weight: 1}, {name: v2, port: 8080, weight: 0}]
  - matches: [{path: {type: PathPrefix, value: /nothing}}]
    backendRefs: [{name: nowhere, port: 8080}]
---
""" + ROUTE + """metadata: {name: cross, namespace: other}
spec:
  parentRefs: [{name: main, namespace: gw}]
  hostnames: [cross.example.com]
  rules: [{backendRefs: [{name: echo, port: 8080}]}]
---
""" + ROUTE + """metadata: {name: granted, namespace: gw}
spec:
  parentRefs: [{name: main, sectionName: http}]
  hostnames: [granted.example.com]
  rules: [{backendRefs: [{name: echo, namespace: other, port: 8080}]}]
---
""" + ROUTE + """metadata: {name: denied, namespace: gw}
spec:
  parentRefs: [{name: main, sectionName: http}]
  hostnames: [denied.example.com]
  rules: [{backendRefs: [{name: private, namespace: other, port: 8080}]}]
---
""" + ROUTE + """metadata: {name: secure, namespace: gw}
spec:
  parentRefs: [{name: main, sectionName: https}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
---
""" + ROUTE + """metadata: {name: stray, namespace: other}
spec:
  parentRefs: [{name: main, namespace: gw, sectionName: https}]
  rules: [{backendRefs: [{name: echo, port: 8080}]}]
"""


def files(tmp) -> list[str]:
    cert, key = certs.make_cert(["secure.example.com"], CA)
    return [manifest(tmp.mktemp("gw"), CLUSTER + "---\n" + certs.secret_manifest("gw", "secure-tls", cert, key))]


lab = shared_lab("gw", files)


def status(lab: Lab, kind: str, name: str) -> dict:
    return next(o for o in lab.objects(kind) if o["metadata"]["name"] == name)["status"]


def request(lab: Lab, host: str, path: str, *args: str, scheme: str = "http") -> tuple[int, dict, str]:
    """(status, the echo or {}, the response headers) of one request to the Gateway's address."""
    ip = status(lab, "gateways", "main")["addresses"][0]["value"]
    port = 443 if scheme == "https" else 80
    ca = f"/tmp/gingham-gw-ca-{os.getpid()}.crt"
    with open(ca, "wb") as f:
        f.write(CA[0])
    try:
        r = subprocess.run(["nsenter", f"--net={lab.target_netns('external')}", "curl", "-s", "-m", "5", "-D", "-",
                            "--cacert", ca, "--resolve", f"{host}:{port}:{ip}", *args, f"{scheme}://{host}{path}"],
                           capture_output=True, text=True)
    finally:
        os.unlink(ca)
    head, _, body = r.stdout.partition("\n\n")  # text mode: curl's CRLFs read as newlines
    code = int(head.split()[1]) if head.startswith("HTTP") else 0
    try:
        return code, json.loads(body), head
    except ValueError:
        return code, {}, head


@pytest.fixture(scope="module", autouse=True)
def served(lab):
    import time
    deadline = time.monotonic() + 15
    while request(lab, "app.example.com", "/")[0] != 200:
        assert time.monotonic() < deadline, "the Gateway never answered"
        time.sleep(0.2)


@pytest.mark.parametrize("path,args,pod", [
    ("/", (), "web-0"),
    ("/exact", (), "api-0"),
    ("/exact/x", (), "web-0"),                     # Exact is exact
    ("/api", (), "api-0"),                         # PathPrefix /api/ matches /api (trailing slash ignored)
    ("/apix", (), "web-0"),                        # and not /apix (by path element)
    ("/", ("-H", "X-Env: canary"), "v2-0"),
    ("/api/x", ("-H", "X-Env: canary"), "api-0"),  # a longer path beats a header match
    ("/?v=2", (), "v2-0"),
    ("/", ("-X", "POST"), "api-0"),
    ("/weights", (), "web-0"),                     # a weight of 0 takes nothing
])
def test_matches_in_the_specs_precedence(lab, path, args, pod):
    code, echo, head = request(lab, "app.example.com", path, *args)
    assert code == 200 and echo.get("pod") == pod, (code, echo, head)


def test_filters_redirect_rewrite_and_headers(lab):
    code, _, head = request(lab, "app.example.com", "/old/page?x=1")
    assert code == 301 and "location: http://new.example.com/old/page?x=1" in head.lower()
    code, echo, _ = request(lab, "app.example.com", "/prefix/one/two")
    assert code == 200 and echo["path"] == "/one/two"
    code, echo, head = request(lab, "app.example.com", "/headers", "-H", "X-Remove: me", "-H", "X-Set: old")
    assert code == 200 and echo["headers"]["X-Set"] == ["set"] and echo["headers"]["X-Add"] == ["added"]
    assert "X-Remove" not in echo["headers"] and "x-reply: hello" in head.lower()


def test_backends_that_do_not_resolve_answer_500_and_grants_let_routes_across_namespaces(lab):
    assert request(lab, "app.example.com", "/nothing")[0] == 500
    code, echo, _ = request(lab, "granted.example.com", "/")
    assert code == 200 and echo["namespace"] == "other"
    assert request(lab, "denied.example.com", "/")[0] == 500
    code, echo, _ = request(lab, "cross.example.com", "/")  # a route in another namespace, allowed by the listener
    assert code == 200 and echo["pod"] == "echo-0"
    assert request(lab, "unknown.example.com", "/")[0] == 404


def test_https_listener_with_its_certificate(lab):
    code, echo, _ = request(lab, "secure.example.com", "/s", scheme="https")
    assert code == 200 and echo["pod"] == "web-0" and echo["headers"]["X-Forwarded-Proto"] == ["https"]


def test_status_as_the_conformance_suite_reads_it(lab):
    cls = status(lab, "gatewayclasses", "gingham")
    assert [(c["type"], c["status"]) for c in cls["conditions"]] == [("Accepted", "True")]
    gw = status(lab, "gateways", "main")
    assert gw["addresses"][0]["type"] == "IPAddress" and gw["addresses"][0]["value"].startswith("192.168.200.2")
    assert {c["type"]: (c["status"], c["reason"]) for c in gw["conditions"]} == {
        "Accepted": ("True", "Accepted"), "Programmed": ("True", "Programmed")}
    listeners = {ln["name"]: ln for ln in gw["listeners"]}
    assert listeners["http"]["attachedRoutes"] == 4 and listeners["https"]["attachedRoutes"] == 1
    assert listeners["http"]["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]
    assert all(c["status"] == ("False" if c["type"] == "Conflicted" else "True")
               for ln in listeners.values() for c in ln["conditions"])

    def parent(route: str) -> dict:
        (p,) = status(lab, "httproutes", route)["parents"]
        assert p["controllerName"] == "gingham.dev/gateway-controller"
        return {c["type"]: (c["status"], c["reason"]) for c in p["conditions"]}
    assert parent("app") == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "BackendNotFound")}
    assert parent("granted") == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    assert parent("denied")["ResolvedRefs"] == ("False", "RefNotPermitted")
    assert parent("stray")["Accepted"] == ("False", "NotAllowedByListeners")  # https allows the Same namespace only


def test_a_new_endpoint_of_a_route_goes_live_without_a_reload(lab, tmp_path):
    import time
    cfg = os.path.join(lab.dir, "nodes", "node-1", "ingress", "haproxy.cfg")
    before = open(cfg).read()
    pod = manifest(tmp_path, """
        apiVersion: v1
        kind: Pod
        metadata: {name: v2-1, namespace: gw, labels: {app: v2}}
        spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 8080}]}]}
        """)
    lab.apply([pod])
    try:
        deadline = time.monotonic() + 5
        seen: set[str] = set()
        while seen != {"v2-0", "v2-1"} and time.monotonic() < deadline:
            seen.add(request(lab, "app.example.com", "/", "-H", "X-Env: canary")[1].get("pod", ""))
        assert seen == {"v2-0", "v2-1"}
        assert open(cfg).read() == before  # the weights and the new address went over the runtime API
    finally:
        lab.delete([pod])
