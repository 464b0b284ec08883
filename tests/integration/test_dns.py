"""Cluster DNS from pods in a lab, with dig (bind9-dnsutils) through the pod's own resolv.conf."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from gingham.lab.cluster import Lab

from .conftest import RUN_ID, shared_lab
from ..helpers.lab import manifest

pytestmark = pytest.mark.skipif(not shutil.which("dig"), reason="dig (bind9-dnsutils) is not installed")

CLUSTER = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: dns}
spec: {nodes: 2}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: d, ports: [{name: pg, containerPort: 5432}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cache, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache}}
    spec: {containers: [{name: c, ports: [{containerPort: 6379}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: cache, namespace: shop}
spec: {clusterIP: None, selector: {app: cache}, ports: [{name: redis, port: 6379}]}
---
apiVersion: v1
kind: Service
metadata: {name: alias, namespace: shop}
spec: {type: ExternalName, externalName: backend.shop.svc.cluster.local}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec: {containers: [{name: c, ports: [{containerPort: 7}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: shop}
spec: {selector: {app: db}, ports: [{name: pg, port: 5432, targetPort: pg}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: None, selector: {app: db}, ports: [{name: pg, port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: docs, namespace: shop}
spec: {type: ExternalName, externalName: docs.example.org}
"""


lab = shared_lab("d", lambda tmp_path_factory: [manifest(tmp_path_factory.mktemp("dns"), CLUSTER)])



def dig(lab: Lab, *args: str, pod: str = "shop/client") -> str:
    ns = os.path.basename(lab.target_netns(pod))
    r = subprocess.run(["ip", "netns", "exec", ns, "dig", "+time=2", "+tries=1", *args], capture_output=True, text=True)
    return r.stdout


def short(lab: Lab, *args: str) -> list[str]:
    return sorted(dig(lab, "+short", *args).split("\n")[:-1])


def test_service_names_through_the_search_path(lab):
    cip = next(s["clusterIP"] for s in lab.services() if s["name"] == "backend")
    assert short(lab, "backend.shop.svc.cluster.local") == [cip]
    assert short(lab, "+search", "backend") == [cip]          # <svc> from the same namespace
    assert short(lab, "+search", "backend.shop") == [cip]
    assert short(lab, "+tcp", "backend.shop.svc.cluster.local") == [cip]
    assert short(lab, "-x", cip) == ["backend.shop.svc.cluster.local."]
    assert short(lab, "TXT", "dns-version.cluster.local") == ['"1.1.0"']
    resolv = subprocess.run(["ip", "netns", "exec", os.path.basename(lab.target_netns("shop/client")), "cat",
                             "/etc/resolv.conf"], capture_output=True, text=True).stdout
    assert "search shop.svc.cluster.local svc.cluster.local cluster.local" in resolv and "ndots:5" in resolv
    assert "nameserver 10.96.0.10" in resolv


def test_headless_srv_externalname_and_pods(lab):
    pods = {p["name"]: p["ip"] for p in lab.pods("shop")}
    assert short(lab, "db.shop.svc.cluster.local") == sorted([pods["db-0"], pods["db-1"]])
    assert short(lab, "db-0.db.shop.svc.cluster.local") == [pods["db-0"]]
    assert short(lab, "SRV", "_pg._tcp.backend.shop.svc.cluster.local") == ["0 100 5432 backend.shop.svc.cluster.local."]
    srv = short(lab, "SRV", "_pg._tcp.db.shop.svc.cluster.local")
    assert sorted(s.split()[-1] for s in srv) == ["db-0.db.shop.svc.cluster.local.", "db-1.db.shop.svc.cluster.local."]
    assert short(lab, "docs.shop.svc.cluster.local", "CNAME") == ["docs.example.org."]
    ip = pods["client"]
    assert short(lab, f"{ip.replace('.', '-')}.shop.pod.cluster.local") == [ip]


def test_nxdomain_nodata_and_outside_names(lab):
    assert "status: NXDOMAIN" in dig(lab, "nothing.shop.svc.cluster.local")
    out = dig(lab, "AAAA", "backend.shop.svc.cluster.local")
    assert "status: NOERROR" in out and "ANSWER: 0" in out
    t = time.monotonic()
    assert "status: SERVFAIL" in dig(lab, "example.com")  # no upstream: fails at once, never leaves the lab
    assert time.monotonic() - t < 1.5


def test_a_removed_endpoint_leaves_the_answers(lab, tmp_path):
    pods = {p["name"]: p["ip"] for p in lab.pods("shop")}
    one = CLUSTER.split("---")[2].replace("replicas: 2", "replicas: 1")
    assert "StatefulSet" in one
    lab.apply([manifest(tmp_path, one, "one.yaml")])
    deadline = time.monotonic() + 2
    while short(lab, "db.shop.svc.cluster.local") != [pods["db-0"]] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert short(lab, "db.shop.svc.cluster.local") == [pods["db-0"]]
    assert time.monotonic() < deadline  # within a second or two of the change
    lab.apply([manifest(tmp_path, CLUSTER.split("---")[2], "two.yaml")])


def test_metrics_in_prometheus_format(lab):
    dig(lab, "backend.shop.svc.cluster.local")
    ns = os.path.basename(lab.target_netns("shop/client"))
    code = "import urllib.request; print(urllib.request.urlopen('http://10.96.0.10:9153/metrics', timeout=3).read().decode())"
    import sys
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert 'gingham_dns_requests_total{type="A",rcode="NOERROR"}' in out
    assert "gingham_dns_request_duration_seconds_bucket" in out and "gingham_dns_cache_hits_total" in out


def test_names_outside_the_cluster_go_to_the_upstream(tmp_path):
    """dnsmasq in the lab's `external` namespace is the upstream; nothing leaves the lab."""
    body = CLUSTER.replace("spec: {nodes: 2}", "spec: {nodes: 1, upstreamDNS: [192.168.200.100]}")
    lab = Lab(f"u{RUN_ID}")
    try:
        lab.up([manifest(tmp_path, body)])
        ext = os.path.basename(lab.target_netns("external"))
        hosts = tmp_path / "hosts"
        hosts.write_text("192.0.2.7 docs.example.org\n")
        dm = subprocess.Popen(["ip", "netns", "exec", ext, "dnsmasq", "--no-daemon", "--listen-address=192.168.200.100",
                               "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}",
                               "--user=root", "--pid-file="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            assert short(lab, "docs.example.org") == ["192.0.2.7"]
            assert short(lab, "+search", "backend") != []  # cluster names still answered here
            direct = subprocess.run(["ip", "netns", "exec", ext, "dig", "@192.168.200.100", "nothere.example.org"],
                                    capture_output=True, text=True).stdout
            status = direct.split("status: ")[1].split(",")[0]
            assert f"status: {status}" in dig(lab, "nothere.example.org")  # the upstream's own answer, passed on
        finally:
            dm.terminate()
            dm.wait()
    finally:
        lab.down()


def test_lab_probe_takes_a_dns_name(lab):
    import json
    import sys
    r = subprocess.run([sys.executable, "-m", "gingham.cli", "lab", "probe", "--name", lab.name, "shop/client",
                        "backend", "5432", "-o", "json"], capture_output=True, text=True)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["answeredBy"] in ("db-0", "db-1")
    assert out["address"] == next(s["clusterIP"] for s in lab.services() if s["name"] == "backend")


SOA = "ns.dns.cluster.local. hostmaster.cluster.local."


def test_negative_answers_carry_the_zone_soa(lab):
    for args in (["nothing.shop.svc.cluster.local"], ["AAAA", "backend.shop.svc.cluster.local"]):
        out = dig(lab, *args)
        assert "AUTHORITY: 1" in out and f"cluster.local.\t\t5\tIN\tSOA\t{SOA}" in out.replace("  ", "\t"), out
    soa = short(lab, "SOA", "cluster.local")
    assert len(soa) == 1 and soa[0].startswith(SOA) and soa[0].endswith("7200 1800 86400 5")
    assert short(lab, "NS", "cluster.local") == ["ns.dns.cluster.local."]
    assert short(lab, "ns.dns.cluster.local") == ["10.96.0.10"]  # the DNS Service's address
    assert "ANSWER: 1" in dig(lab, "TXT", "dns-version.cluster.local") and "28800" in dig(
        lab, "TXT", "dns-version.cluster.local")


def test_headless_names_come_from_hostname_and_subdomain_only(lab):
    pods = {p["name"]: p["ip"] for p in lab.pods("shop")}
    cache_ip = pods["cache-0"]
    dashed = cache_ip.replace(".", "-")
    assert short(lab, f"{dashed}.cache.shop.svc.cluster.local") == [cache_ip]
    assert "status: NXDOMAIN" in dig(lab, "cache-0.cache.shop.svc.cluster.local")  # a Deployment's pod name is not
    assert short(lab, "SRV", "_redis._tcp.cache.shop.svc.cluster.local") == \
        [f"0 100 6379 {dashed}.cache.shop.svc.cluster.local."]
    rev = ".".join(reversed(cache_ip.split("."))) + ".in-addr.arpa"
    assert short(lab, "PTR", rev) == [f"{dashed}.cache.shop.svc.cluster.local."]
    rev0 = ".".join(reversed(pods["db-0"].split("."))) + ".in-addr.arpa"
    assert short(lab, "PTR", rev0) == ["db-0.db.shop.svc.cluster.local."]  # the StatefulSet's hostname


def test_externalname_inside_the_zone_is_followed(lab):
    out = short(lab, "alias.shop.svc.cluster.local")
    backend = next(s["clusterIP"] for s in lab.services() if s["name"] == "backend")
    assert out == sorted(["backend.shop.svc.cluster.local.", backend])


def test_flags_opcodes_and_responses(lab):
    out = dig(lab, "+adflag", "backend.shop.svc.cluster.local")
    flags = out.split("flags:")[1].split(";")[0]
    assert " ad" not in flags and " aa" in flags
    assert "status: NOTIMP" in dig(lab, "+opcode=2", "backend.shop.svc.cluster.local")  # STATUS
    ns = os.path.basename(lab.target_netns("shop/client"))
    import sys
    code = ("import socket; from dnslib import DNSRecord\n"
            "q = DNSRecord.question('backend.shop.svc.cluster.local'); r = q.reply().pack()\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); s.sendto(r, ('10.96.0.10', 53))\n"
            "try:\n    s.recv(512); print('answered')\nexcept socket.timeout:\n    print('silent')")
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "silent", r.stderr  # a response is never answered (no loops between servers)
    code = ("import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)\n"
            "s.sendto(bytes([0x12, 0x34, 1, 0, 0, 1]) + b'\\xff' * 20, ('10.96.0.10', 53))\n"
            "r = s.recv(512); print(r[0] == 0x12 and r[1] == 0x34 and r[3] & 15)")
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "1", r.stderr  # a malformed query with a header: FORMERR (rcode 1), same id
    assert short(lab, "backend.shop.svc.cluster.local")  # and the server answers on
