#!/usr/bin/env bash
# Installs what gingham needs on a fresh Debian machine: system tools and a pinned venv.
# Idempotent: a second run only checks. No service is started (containerd and friends
# are only ever run inside network namespaces by the tests and the lab).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(iproute2 nftables conntrack containernetworking-plugins iperf3
              bind9-dnsutils containerd runc util-linux procps iputils-ping busybox-static dnsperf dnsmasq-base
              etcd-server etcd-client haproxy curl hey prometheus bird2)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # A policy-rc.d that says no keeps apt from starting containerd or etcd in the host's
  # namespaces (they only ever run inside a lab's or a test's namespaces, with their own configs).
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# gingham itself in "compat" editable mode: a plain path in a .pth file. The default mode
# imports a finder (and pathlib) at every Python start, 20 ms of each `gingham` command.
want="$(cat requirements.lock; echo '# gingham: editable_mode=compat')"
if [ "$want" != "$(cat .venv/.installed 2>/dev/null)" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.lock
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e . --config-settings editable_mode=compat
  printf '%s\n' "$want" > .venv/.installed
fi
# bytecode, as pip writes it for an installed package: without it every `gingham` command
# compiles the modules it imports again (PYTHONDONTWRITEBYTECODE keeps Python from caching them)
.venv/bin/python -m compileall -q -j 0 gingham >/dev/null
