"""Prometheus in the lab: it scrapes every agent and DNS server, loads the rules, and every
panel of every dashboard (monitoring/dashboards) parses and returns series."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import time

from gingham import source_root
from gingham.lab import monitoring
from gingham.lab.cluster import Lab

from ..helpers.lab import manifest

CLUSTER = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: mon}
spec: {nodes: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 9}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, labels: {app: db}}
spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 5432}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, labels: {app: web}}
spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-db}
spec: {podSelector: {matchLabels: {app: db}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]}
"""


def exprs() -> list[tuple[str, str]]:
    out = []
    for path in sorted(glob.glob(os.path.join(source_root(), "monitoring", "dashboards", "*.json"))):
        for p in json.load(open(path))["panels"]:
            out += [(f"{os.path.basename(path)}: {p['title']}", t["expr"].replace("$instance", ".*"))
                    for t in p["targets"]]
    return out


def test_prometheus_scrapes_the_lab_and_every_dashboard_query_returns_series(lab_name, tmp_path):
    lab: Lab = lab_name()
    lab.up([manifest(tmp_path, CLUSTER)], monitoring=True)
    db = next(p["ip"] for p in lab.pods() if p["name"] == "db-0")

    def traffic() -> None:
        """For the panels: a connection that ends (bytes), one that is denied, DNS answers and a SERVFAIL."""
        subprocess.run(["nsenter", f"--net={lab.target_netns('default/client')}", "sh", "-c",
                        f"curl -s -m 1 http://web.default.svc.cluster.local/ ; curl -s -m 1 http://{db}:5432/ ; "
                        "dig +time=1 +tries=1 @10.96.0.10 web.default.svc.cluster.local ; "
                        "dig +time=1 +tries=1 @10.96.0.10 example.org"], capture_output=True)
    traffic()
    prom_ns = os.path.join("/run/netns", lab.ns("monitoring"))
    up = monitoring.query(prom_ns, 'up')
    assert up["status"] == "success"
    deadline = time.monotonic() + 150  # rates need two scrapes (5 s apart) after the first record
    missing: list[str] = []
    while time.monotonic() < deadline:
        ups = monitoring.query(prom_ns, 'up == 1')["data"]["result"]
        missing = [title for title, e in exprs() if not monitoring.query(prom_ns, e)["data"]["result"]]
        if len(ups) == 4 and not missing:
            break
        traffic()
        time.sleep(2)
    assert {r["metric"]["job"] for r in ups} == {"gingham-agent", "gingham-dns"} and len(ups) == 4
    assert not missing, f"panels without series: {missing}"
    for title, e in exprs():
        assert monitoring.query(prom_ns, e)["status"] == "success", title
    assert monitoring.query(prom_ns, "ALERTS")["status"] == "success"
