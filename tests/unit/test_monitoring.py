"""The monitoring files by value: the rules pass `promtool check rules` and their unit tests
(`promtool test rules`), and every dashboard is a Grafana dashboard whose panels query
Prometheus (the integration test runs each query against a lab's Prometheus)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess

import pytest

from gingham import source_root

MONITORING = os.path.join(source_root(), "monitoring")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (scripts/setup.sh installs prometheus)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=MONITORING)


def test_the_rules_are_valid_and_their_unit_tests_pass():
    r = promtool("check", "rules", "rules.yml")
    assert r.returncode == 0 and "SUCCESS: 16 rules found" in r.stdout, r.stdout + r.stderr
    r = promtool("test", "rules", "rules_test.yml")
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def dashboards() -> dict[str, dict]:
    return {os.path.basename(p): json.load(open(p)) for p in sorted(glob.glob(os.path.join(MONITORING, "dashboards",
                                                                                           "*.json")))}


def test_the_dashboards_are_grafana_dashboards_of_prometheus_panels():
    ds = dashboards()
    assert set(ds) == {"agent.json", "services.json", "netpol-flows.json", "dns.json"}
    assert len({d["uid"] for d in ds.values()}) == len(ds)
    for name, d in ds.items():
        assert d["panels"] and d["templating"]["list"][0]["type"] == "datasource", name
        for p in d["panels"]:
            assert p["datasource"]["type"] == "prometheus" and p["targets"], (name, p["title"])
            assert all(t["expr"].strip() for t in p["targets"]), (name, p["title"])
            assert {"x", "y", "w", "h"} <= set(p["gridPos"]), (name, p["title"])
