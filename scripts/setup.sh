#!/usr/bin/env bash
# Installs what gingham needs on a fresh Debian machine: system tools and a pinned venv.
# Idempotent: a second run only checks. No service is started (containerd and friends
# are only ever run inside network namespaces by the tests and the lab).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(iproute2 nftables conntrack containernetworking-plugins iperf3
              bind9-dnsutils containerd runc util-linux procps iputils-ping busybox-static dnsperf dnsmasq-base)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps apt from starting containerd in the host's namespaces.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! cmp -s requirements.lock .venv/.installed 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.lock
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  cp requirements.lock .venv/.installed
fi
