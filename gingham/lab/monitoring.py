"""The lab's Prometheus (`gingham lab up --monitoring`): Debian's prometheus in a namespace of its own.

It lives at 192.168.200.9 on the underlay (`gl-<lab>-monitoring`), listens on :9090, scrapes
every agent (:10249, job `gingham-agent`) and every node's DNS server (:9153, job
`gingham-dns`) every 5 s, and loads monitoring/rules.yml (recording and alerting rules). Its
data lives in the lab's directory and goes with `lab down`. The Grafana dashboards in
monitoring/dashboards/ query it; `lab exec external -- curl http://192.168.200.9:9090/...`
reaches it, and so does `query()` here.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .. import source_root
from ..kernel import netns

IP = "192.168.200.9"
PORT = 9090
RULES = os.path.join(source_root(), "monitoring", "rules.yml")


def config(node_ips: list[str], rules: str = RULES) -> str:
    """Prometheus's configuration for these nodes (YAML is JSON's superset: written as JSON)."""
    return json.dumps({
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [rules],
        "scrape_configs": [
            {"job_name": "gingham-agent", "static_configs": [{"targets": [f"{ip}:10249" for ip in node_ips]}]},
            {"job_name": "gingham-dns", "static_configs": [{"targets": [f"{ip}:9153" for ip in node_ips]}]},
        ]}, indent=2) + "\n"


def start(ns_path: str, directory: str, node_ips: list[str]) -> int:
    """Prometheus started in `ns_path`; its pid, once it answers."""
    os.makedirs(os.path.join(directory, "data"), exist_ok=True)
    cfg = os.path.join(directory, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write(config(node_ips))
    log = open(os.path.join(directory, "prometheus.log"), "a")
    proc = subprocess.Popen(["nsenter", f"--net={ns_path}", "prometheus", f"--config.file={cfg}",
                             f"--storage.tsdb.path={os.path.join(directory, 'data')}",
                             f"--web.listen-address={IP}:{PORT}", "--log.level=warn"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            with netns.entered(ns_path):
                urllib.request.urlopen(f"http://{IP}:{PORT}/-/ready", timeout=1).read()
            return proc.pid
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                from .cluster import LabError  # one line and exit code 1 from `lab up --monitoring`
                raise LabError(f"prometheus did not start; see {os.path.join(directory, 'prometheus.log')}")
            time.sleep(0.2)


def query(ns_path: str, expr: str) -> dict[str, Any]:
    """The HTTP API's answer to an instant query (status, data)."""
    url = f"http://{IP}:{PORT}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with netns.entered(ns_path):
        try:
            body = urllib.request.urlopen(url, timeout=5).read()
        except urllib.error.HTTPError as e:  # a query Prometheus refuses: its error body says why
            body = e.read()
    return dict(json.loads(body))
