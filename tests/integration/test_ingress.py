"""Ingress on HAProxy, end to end: curl from `external` through the lab's ingress address.

What the Ingress conformance features (kubernetes-sigs/ingress-controller-conformance) and
the Kubernetes Ingress docs check, as facts: host rules and wildcards of one label, path
types and their precedence across Ingresses, default backends, class filtering and status,
load balancing over the pods, TLS by SNI with the certificate the Ingress names, HTTP/2 by
ALPN, the client's address at the backend, a missing backend answering 503, and changes
live within seconds (endpoints without a reload).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from gingham.ingress import certs
from gingham.lab.cluster import Lab

from ..helpers.lab import manifest
from .conftest import shared_lab

CA = certs.make_ca()

CLUSTER = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: ing}
spec: {nodes: 2, loadBalancerPool: 192.168.200.200-192.168.200.203}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: shop, labels: {app: api}}
spec: {nodeName: node-2, containers: [{name: api, ports: [{name: http, containerPort: 9000}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {selector: {app: api}, ports: [{name: http, port: 80, targetPort: http}]}
---
apiVersion: v1
kind: Secret
metadata: {name: not-a-pair, namespace: shop}
type: kubernetes.io/tls
stringData: {tls.crt: "not a certificate", tls.key: "not a key"}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: shop}
spec:
  tls:
  - {hosts: [shop.example.com], secretName: shop-tls}
  - {hosts: ["*.wild.example.com"], secretName: wild-tls}
  - {hosts: [badtls.example.com], secretName: not-a-pair}
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
      - {path: /api/, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
      - {path: /exact, pathType: Exact, backend: {service: {name: api, port: {number: 80}}}}
      - {path: /gone, pathType: Prefix, backend: {service: {name: nowhere, port: {number: 80}}}}
  - host: "*.wild.example.com"
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}]
  - host: badtls.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
  - http:
      paths: [{path: /any, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: foreign, namespace: shop}
spec:
  ingressClassName: nginx
  rules:
  - host: foreign.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
"""


def secrets() -> str:
    shop = certs.make_cert(["shop.example.com"], CA)
    wild = certs.make_cert(["*.wild.example.com"], CA)
    return "---\n" + certs.secret_manifest("shop", "shop-tls", *shop) + "---\n" + \
        certs.secret_manifest("shop", "wild-tls", *wild)


lab = shared_lab("ing", lambda tmp: [manifest(tmp.mktemp("ing"), CLUSTER + secrets())])


def address(lab: Lab) -> str:
    (ing,) = [i for i in lab.objects("ingresses") if i["metadata"]["name"] == "shop"]
    return ing["status"]["loadBalancer"]["ingress"][0]["ip"]


def curl(lab: Lab, *args: str, tmp: str = "/tmp") -> subprocess.CompletedProcess[str]:
    ca = os.path.join(tmp, f"gingham-test-ca-{os.getpid()}.crt")
    with open(ca, "wb") as f:
        f.write(CA[0])
    try:
        return subprocess.run(["nsenter", f"--net={lab.target_netns('external')}", "curl", "-s", "-m", "5",
                               "--cacert", ca, *args], capture_output=True, text=True)
    finally:
        os.unlink(ca)


def get(lab: Lab, host: str, path: str, scheme: str = "http", extra: tuple[str, ...] = ()) -> tuple[int, dict | str]:
    """(status, the echo as a dict, or the body) of one request with that Host (and SNI on https)."""
    ip = address(lab)
    port = 443 if scheme == "https" else 80
    r = curl(lab, "--resolve", f"{host}:{port}:{ip}", "-w", "\n%{http_code}", *extra, f"{scheme}://{host}{path}")
    body, _, code = r.stdout.rpartition("\n")
    try:
        return int(code), json.loads(body)
    except ValueError:
        return int(code or 0), body


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
            if got:
                return got
        except (AssertionError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            return check()
        time.sleep(0.2)


@pytest.fixture(scope="module", autouse=True)
def served(lab):
    """The ingress answers (the agents start HAProxy with their first pass)."""
    assert wait_for(lambda: get(lab, "shop.example.com", "/")[0] == 200), get(lab, "shop.example.com", "/")


def test_status_class_and_the_lab_objects(lab):
    ings = {i["metadata"]["name"]: i for i in lab.objects("ingresses")}
    assert ings["shop"]["status"]["loadBalancer"]["ingress"] == [{"ip": "192.168.200.200"}]
    assert ings["foreign"]["status"] == {"loadBalancer": {}}  # another controller's class: left alone
    (cls,) = lab.objects("ingressclasses")
    assert cls["spec"]["controller"] == "gingham.dev/ingress-controller"
    assert cls["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    assert get(lab, "foreign.example.com", "/")[0] == 404


@pytest.mark.parametrize("host,path,pod", [
    ("shop.example.com", "/", "web"),
    ("shop.example.com", "/api", "api"),        # a Prefix's trailing slash is ignored
    ("shop.example.com", "/api/items", "api"),
    ("shop.example.com", "/apix", "web"),       # by path element: /api does not match /apix
    ("shop.example.com", "/exact", "api"),
    ("shop.example.com", "/exact/more", "web"),  # Exact is exact
    ("SHOP.example.com:80", "/api", "api"),      # the host is matched without case or port
    ("a.wild.example.com", "/anything", "api"),
    ("www.example.com", "/any/thing", "api"),    # no host matched: the rules without a host
    ("shop.example.com", "/any", "web"),         # a host that matched keeps its own paths (no fall-through)
])
def test_hosts_and_paths_route_as_the_ingress_spec_says(lab, host, path, pod):
    code, echo = get(lab, host.split(":")[0], path, extra=("-H", f"Host: {host}"))
    assert code == 200 and isinstance(echo, dict), (code, echo)
    assert echo["pod"].startswith(pod) and echo["namespace"] == "shop"
    assert echo["path"] == path and echo["host"] == host and echo["method"] == "GET"


@pytest.mark.parametrize("host,path", [
    ("b.a.wild.example.com", "/"),  # a wildcard matches exactly one label
    ("wild.example.com", "/"),
    ("www.example.com", "/"),
])
def test_what_matches_nothing_is_404(lab, host, path):
    assert get(lab, host, path)[0] == 404


def test_a_route_to_a_missing_service_answers_503_and_the_others_still_serve(lab):
    code, body = get(lab, "shop.example.com", "/gone/x")
    assert code == 503 and "does not exist" in str(body)
    assert get(lab, "shop.example.com", "/")[0] == 200


def test_requests_are_spread_over_the_pods_and_the_backend_sees_the_client(lab):
    pods = set()
    for _ in range(8):
        code, echo = get(lab, "shop.example.com", "/")
        assert code == 200
        pods.add(echo["pod"])
        assert echo["headers"]["X-Forwarded-For"] == ["192.168.200.100"]  # external's own address
        assert echo["headers"]["X-Forwarded-Proto"] == ["http"]
        assert echo["headers"]["Forwarded"] == ["for=192.168.200.100;proto=http"]
    assert pods == {"web-0", "web-1"}


def subject(lab: Lab, sni: str | None) -> str:
    """The subject of the certificate the ingress presents for this SNI (None: no SNI)."""
    args = ["openssl", "s_client", "-connect", f"{address(lab)}:443"]
    args += ["-servername", sni] if sni else ["-noservername"]
    r = subprocess.run(["nsenter", f"--net={lab.target_netns('external')}", *args], input="", capture_output=True,
                       text=True, timeout=10)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("subject=")), "")
    return line


def test_sni_picks_the_certificate_the_ingress_names_and_unknown_names_get_the_default(lab):
    assert "CN = shop.example.com" in subject(lab, "shop.example.com")
    assert "CN = *.wild.example.com" in subject(lab, "x.wild.example.com")
    for other in ("badtls.example.com", "unknown.example.org", None):  # an invalid pair, no Ingress, no SNI
        s = subject(lab, other)
        assert "CN = ingress.node-" in s and "example" not in s, (other, s)


def test_https_and_http2_with_the_host_header_picking_the_route(lab):
    code, echo = get(lab, "shop.example.com", "/api/x", "https")
    assert code == 200 and echo["pod"].startswith("api") and echo["headers"]["X-Forwarded-Proto"] == ["https"]
    ip = address(lab)
    r = curl(lab, "--http2", "--resolve", f"shop.example.com:443:{ip}", "-w", "\n%{http_version}",
             "https://shop.example.com/")
    assert r.stdout.rsplit("\n", 1)[1] == "2"
    # plain HTTP to a host that has TLS is served, not redirected
    assert get(lab, "shop.example.com", "/")[0] == 200


def test_changes_are_live_within_seconds_and_the_older_claim_wins(lab, tmp_path):
    newer = manifest(tmp_path, """
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: a-newer, namespace: shop}
        spec:
          rules:
          - host: shop.example.com
            http:
              paths:
              - {path: /api, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
              - {path: /api/v2, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
          - host: new.example.com
            http:
              paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
        """)
    time.sleep(1.1)  # a later creationTimestamp (seconds) than the Ingresses of lab up
    lab.apply([newer])
    try:
        assert wait_for(lambda: get(lab, "new.example.com", "/")[0] == 200, 5)
        assert get(lab, "shop.example.com", "/api/x")[1]["pod"].startswith("api")  # shop/shop is older: it keeps /api
        assert get(lab, "shop.example.com", "/api/v2/x")[1]["pod"].startswith("web")  # the longest prefix, any Ingress
    finally:
        lab.delete([newer])
    assert wait_for(lambda: get(lab, "new.example.com", "/")[0] == 404, 5)


def test_new_endpoints_go_live_without_a_reload(lab, tmp_path):
    cfg = os.path.join(lab.dir, "nodes", "node-1", "ingress", "haproxy.cfg")
    before = open(cfg).read()
    more = manifest(tmp_path, """
        apiVersion: v1
        kind: Pod
        metadata: {name: api-1, namespace: shop, labels: {app: api}}
        spec: {nodeName: node-1, containers: [{name: api, ports: [{name: http, containerPort: 9000}]}]}
        """)
    lab.apply([more])
    try:
        seen = wait_for(lambda: {get(lab, "x.wild.example.com", "/")[1]["pod"] for _ in range(6)} >= {"api-0", "api-1"})
        assert seen
        assert open(cfg).read() == before  # the runtime API moved the address into a slot
    finally:
        lab.delete([more])
    assert wait_for(lambda: {get(lab, "x.wild.example.com", "/")[1]["pod"] for _ in range(6)} == {"api-0"})


def test_no_request_fails_while_endpoints_roll_and_the_configuration_reloads(lab, tmp_path):
    """hey from external for a few seconds while a pod comes and goes (runtime API) and an
    Ingress comes and goes (reloads): every response is a 200, no connection is refused or cut."""
    pod = manifest(tmp_path, """
        apiVersion: v1
        kind: Pod
        metadata: {name: web-extra, namespace: shop, labels: {app: web}}
        spec: {nodeName: node-2, containers: [{name: web, ports: [{name: http, containerPort: 8080}]}]}
        """, name="pod.yaml")
    other = manifest(tmp_path, """
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: churn, namespace: shop}
        spec:
          rules:
          - host: churn.example.com
            http:
              paths: [{path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}]
        """, name="ing.yaml")
    load = subprocess.Popen(["nsenter", f"--net={lab.target_netns('external')}", "hey", "-z", "6s", "-c", "4",
                             "-host", "shop.example.com", f"http://{address(lab)}/"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.5)
        for step in range(2):
            lab.apply([pod])
            lab.apply([other])
            time.sleep(0.5)
            lab.delete([pod])
            lab.delete([other])
            time.sleep(0.5)
    finally:
        out, _ = load.communicate(timeout=30)
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    assert list(codes) == ["200"] and int(codes["200"]) > 100, out
    assert "Error distribution" not in out, out


def test_a_websocket_survives_a_reload(lab, tmp_path):
    """ingress-nginx's most reported reload problem: here the old worker keeps the tunnel."""
    import socket

    from gingham.kernel import netns
    cfg = os.path.join(lab.dir, "nodes", "node-1", "ingress", "haproxy.cfg")
    with netns.entered(lab.target_netns("external")):
        s = socket.create_connection((address(lab), 80), timeout=5)
    with s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: shop.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101") and b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        s.sendall(b"before")
        assert s.recv(100) == b"before"
        before = open(cfg).read()
        extra = manifest(tmp_path, """
            apiVersion: networking.k8s.io/v1
            kind: Ingress
            metadata: {name: reload, namespace: shop}
            spec:
              rules:
              - host: reload.example.com
                http:
                  paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
            """)
        lab.apply([extra])
        try:
            assert wait_for(lambda: open(cfg).read() != before, 5)  # reloaded
            assert wait_for(lambda: get(lab, "reload.example.com", "/")[0] == 200, 5)
            s.sendall(b"after")
            assert s.recv(100) == b"after"
        finally:
            lab.delete([extra])
