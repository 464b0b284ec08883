"""Shared test setup.

Address plan (used across tests so expected values read at a glance):
  pod ranges    10.22.0.0/16 and below (one /24 per test network), 10.44.0.0/16 for reference runs
  bridges       gt<run id><n> (unique per test run)
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
