#!/usr/bin/env bash
# Sets up what gingham needs and runs the main demo, inside a throwaway sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec bash scripts/sandbox.sh .venv/bin/gingham "${@:-demo}"
