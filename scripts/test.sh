#!/usr/bin/env bash
# Sets up and runs the whole test suite, inside a throwaway sandbox (scripts/sandbox.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The conventions (DESIGN.md): ruff everywhere, mypy --strict on the pure packages, the CNI protocol
# and the kernel wrappers.
.venv/bin/ruff check gingham tests bench
.venv/bin/mypy --strict --ignore-missing-imports gingham/model gingham/services gingham/netpol gingham/overlay \
  gingham/dns/records.py gingham/cni gingham/kernel
exec bash scripts/sandbox.sh .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
