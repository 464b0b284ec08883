#!/usr/bin/env bash
# Sets up and runs the whole test suite, inside a throwaway sandbox (scripts/sandbox.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The conventions (DESIGN.md): ruff everywhere, mypy --strict on the whole package.
.venv/bin/ruff check gingham tests bench
.venv/bin/mypy --strict --ignore-missing-imports gingham
exec bash scripts/sandbox.sh .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
