#!/usr/bin/env bash
# Sets up and runs the whole test suite, inside a throwaway sandbox (scripts/sandbox.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The conventions (DESIGN.md): ruff everywhere, mypy --strict on the whole package.
.venv/bin/ruff check gingham tests bench
.venv/bin/mypy --strict --ignore-missing-imports gingham
bash scripts/sandbox.sh .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
if [ $# -eq 0 ]; then
  # The Services and NetworkPolicy suites once more, their labs on overlay bgp (BIRD, a router):
  # the same rules must hold when pods are routed instead of encapsulated.
  GINGHAM_TEST_OVERLAY=bgp bash scripts/sandbox.sh .venv/bin/python -m pytest -q -p no:cacheprovider \
    tests/integration/test_services.py tests/integration/test_netpol.py
fi
