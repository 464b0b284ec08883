"""One change live, as a user sees it: `gingham lab apply` of one new Service with N present.

A 2-node lab with 3 backend pods (a Deployment) and N Services selecting them. The bench
runs `gingham lab apply -f one-more.yaml` as a user types it and, from a client pod, tries
to connect to the new Service's ClusterIP every millisecond. Reported per N: how long the
command took, when the first connection through the new Service was answered (from the
command's start, and after it returned), `lab up`'s time, and each agent's CPU while idle
and memory. Run: scripts/bench.sh controlplane [N ...] (default 10 1000 10000 30000).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from gingham.kernel import netns
from gingham.lab.cluster import Lab
from gingham.model import registry as reg

HEAD = """apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: bench}
spec: {nodes: 2, overlay: vxlan, serviceCIDR: 10.96.0.0/12}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec: {nodeName: node-1, containers: [{name: c}]}
"""


def service(name: str, ip: str = "") -> str:
    cip = f"clusterIP: {ip}, " if ip else ""
    return (f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n"
            f"spec: {{{cip}selector: {{app: web}}, ports: [{{port: 80}}]}}\n")


def agent_stats(lab: Lab) -> tuple[list[float], list[float]]:
    """Each agent's CPU share over 3 idle seconds, and its RSS in MB."""
    pids = [int(p) for p in lab.meta()["agents"].values()]

    def cpu(pid: int) -> float:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    before = [cpu(p) for p in pids]
    time.sleep(3)
    shares = [(cpu(p) - b) / 3 for p, b in zip(pids, before)]
    rss = []
    for p in pids:
        with open(f"/proc/{p}/status") as f:
            rss.append(next(int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmRSS")))
    return shares, rss


def settle(lab: Lab, n: int) -> None:
    """Until "nothing changing": the EndpointSlice controller has written a slice per Service
    (it does so after the agents report, so after `lab up` returns), and a second more."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        kvs, _ = lab.store.etcd.range(reg.ENDPOINT_SLICES, page=50000, keys_only=True)
        if len(kvs) >= n:
            break
        time.sleep(0.5)
    time.sleep(1)


def one_change(lab: Lab, tmp: str, ip: str, name: str) -> tuple[float, float, float]:
    """(command seconds, first answer after start, first answer after return)."""
    path = os.path.join(tmp, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(service(name, ip))
    answered: list[float] = []
    stop = threading.Event()
    client = lab.target_netns("default/client")  # before the clock starts: it reads the datastore

    def probe() -> None:
        with netns.entered(client):
            while not stop.is_set():
                s = socket.socket()
                s.settimeout(0.05)
                try:
                    s.connect((ip, 80))
                    answered.append(time.monotonic())
                    return
                except OSError:
                    time.sleep(0.001)
                finally:
                    s.close()

    t = threading.Thread(target=probe)
    t.start()
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "gingham.cli", "lab", "apply", "--name", lab.name, "-f", path],
                       capture_output=True, text=True)
    t1 = time.monotonic()
    t.join(30)
    stop.set()
    if r.returncode != 0 or not answered:
        raise SystemExit(f"apply failed or nothing answered: {r.stderr[-500:]}")
    return t1 - t0, answered[0] - t0, answered[0] - t1


def run(n: int) -> None:
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "lab.yaml")
    with open(path, "w") as f:
        f.write(HEAD + "".join(service(f"s{i}") for i in range(n)))
    lab = Lab(f"cp{n}")
    lab.down()
    t0 = time.monotonic()
    lab.up([path], timeout=1800)
    up = time.monotonic() - t0
    try:
        settle(lab, n)
        idle, rss = agent_stats(lab)
        net = ipaddress.ip_network("10.96.0.0/12")
        rounds = [one_change(lab, tmp, str(net.broadcast_address - 1 - k), f"new{k}") for k in range(5)]
        cmd = statistics.median(r[0] for r in rounds)
        after_start = statistics.median(r[1] for r in rounds)
        after_return = statistics.median(r[2] for r in rounds)
        print(f"| {n:,} | {up:.1f} s | {cmd * 1e3:.0f} ms | {after_start * 1e3:.0f} ms | {after_return * 1e3:.0f} ms | "
              f"{max(idle) * 100:.1f}% | {max(rss):.0f} MB |", flush=True)
    finally:
        lab.down()


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:]] or [10, 1000, 10000, 30000]
    print("| Services | lab up | `lab apply` (command) | first answer after it started | after it returned "
          "| agent CPU idle | agent RSS |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        run(n)
