#!/usr/bin/env bash
# Runs a command in a throwaway host: its own network, mount and PID namespaces.
# Links, routes, nft tables, netns names and processes made inside vanish with it, so
# neither a test nor a bug can reach the machine's own network (DESIGN.md, Containment).
set -euo pipefail
if [ "${GINGHAM_SANDBOX:-}" = 1 ]; then exec "$@"; fi
exec unshare --net --mount --pid --fork --mount-proc --propagation private \
  env GINGHAM_SANDBOX=1 bash -c '
    set -e
    for d in /run/netns /etc/netns /var/lib/cni /run/cni /etc/cni /opt/cni /run/gingham /var/lib/gingham /run/containerd /var/lib/containerd /run/gingham-lab; do
      mkdir -p "$d" && mount -t tmpfs -o mode=0755 gingham-sandbox "$d"
    done
    ip link set lo up
    # bash stays PID 1 of the sandbox so that orphaned processes are reaped, not left as zombies
    "$@"; exit $?' sandbox "$@"
