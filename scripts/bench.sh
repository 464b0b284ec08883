#!/usr/bin/env bash
# Runs a benchmark from bench/ inside the sandbox: scripts/bench.sh cni [ARGS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
name=$1; shift
exec bash scripts/sandbox.sh .venv/bin/python "bench/${name}_bench.py" "$@"
