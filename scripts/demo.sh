#!/usr/bin/env bash
# Sets up what gingham needs and runs the lab demo inside a throwaway sandbox:
# a 3-node VXLAN cluster network from examples/demo.yaml, probed and traced, then taken down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec bash scripts/sandbox.sh bash -c '
  set -e
  g() { echo "\$ gingham $*"; .venv/bin/gingham "$@"; echo; }
  g lab up -f examples/demo.yaml
  g lab probe default/client shop/web-0 80
  g lab probe default/client shop/web-1 80
  g lab probe default/client shop/web-2 53 --protocol UDP
  g lab probe node/node-3 shop/web-0 80
  g lab get services
  g lab probe default/client web.shop 80
  g lab trace default/client web.shop 80
  g lab exec default/client -- dig +short +search web.shop
  g lab exec default/client -- ip -4 route
  g lab down'
