"""Shared test setup, and the suite's one address plan.

Address plan (every test follows it, so expected values read at a glance):
  clusters      pods 10.244.0.0/16, node-N holding 10.244.<N-1>.0/24; Services 10.96.0.0/16;
                nodes 192.168.200.0/24 (node-N at .1N); load balancer addresses 192.168.200.200
                and up; clients outside the cluster 203.0.113.0/24 (TEST-NET-3). The labs' own
                manifests, and the by-value worlds in tests/helpers/, use these.
  CNI runs      pod ranges 10.22.0.0/16 and below (one /24 per test network), 10.23.0.0/16 for
                a second range; 10.44.0.0/16 for the reference plugins' runs.
  parsers       allocator, range and manifest tests use 10.0.0.0/8 literals as plain inputs,
                and 172.16.0.0/12 where an address must be outside every range: no packet is
                ever sent to them.
  bridges       gt<run id><n> (unique per test run)
Helpers that several modules use live in tests/helpers/; test modules never import each other.
Integration tests need root *inside the sandbox* that scripts/test.sh makes (its own
network, mount and PID namespaces): there a bug cannot reach the machine's network.
"""
from __future__ import annotations

import os

import pytest

IN_SANDBOX = os.environ.get("GINGHAM_SANDBOX") == "1"
IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT and IN_SANDBOX:
        return
    why = "needs root" if not IS_ROOT else "needs the sandbox"
    skip = pytest.mark.skip(reason=f"{why}: integration tests create namespaces, links and nft tables; "
                                   "run them with scripts/test.sh (root, inside unshare)")
    for item in items:
        if "root" in item.keywords or "integration" in str(item.fspath):
            item.add_marker(skip)
