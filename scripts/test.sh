#!/usr/bin/env bash
# Sets up and runs the whole test suite, inside a throwaway sandbox (scripts/sandbox.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec bash scripts/sandbox.sh .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
