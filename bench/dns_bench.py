"""Cluster DNS under dnsperf: gingham's server and dnsmasq serving the same names, one run.

10,000 Services (and 50,000 for memory): gingham answers from its record index; dnsmasq
(Debian's dnsmasq-base, no daemon, explicit config, on loopback inside the sandbox)
answers the same A records from a hosts file. dnsperf sends the same query file to
each for the same time. Run: scripts/bench.sh dns.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time

from gingham.dns.records import build
from gingham.dns.server import DNSServer
from gingham.model.services import Service, ServicePort

SECONDS = 5
ROUNDS = 3


def services(n: int) -> list[Service]:
    return [Service(f"ns{i % 50}", f"svc{i}", "ClusterIP", f"10.{96 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}",
                    (ServicePort("http", "TCP", 80, 8080),), {}) for i in range(n)]


def dnsperf(port: int, qfile: str) -> dict[str, float]:
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qfile, "-l", str(SECONDS), "-c", "4",
                          "-q", "200", "-t", "2"], capture_output=True, text=True).stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    lat = re.search(r"Average Latency \(s\):\s+([\d.]+).*?\(min ([\d.]+), max ([\d.]+)\)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out).group(1)
    return {"qps": qps, "avg_ms": float(lat.group(1)) * 1000, "max_ms": float(lat.group(3)) * 1000, "lost": int(lost)}


def main() -> None:
    n = 10000
    svcs = services(n)
    tmp = tempfile.mkdtemp(prefix="gingham-dnsbench-")
    qfile = os.path.join(tmp, "queries")
    with open(qfile, "w") as f:
        for s in svcs[::7]:
            f.write(f"{s.name}.{s.namespace}.svc.cluster.local A\n")
    hosts = os.path.join(tmp, "hosts")
    with open(hosts, "w") as f:
        for s in svcs:
            f.write(f"{s.cluster_ip} {s.name}.{s.namespace}.svc.cluster.local\n")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    index = build(svcs, {}, [])
    server = DNSServer(lambda: index, "127.0.0.1", 5300)
    server.start()
    mem10 = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    dm = subprocess.Popen(["dnsmasq", "--no-daemon", "--port=5301", "--listen-address=127.0.0.1", "--bind-interfaces",
                           "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", "--cache-size=10000", "--user=root",
                           "--pid-file=", "--log-facility=-", "--quiet-dhcp"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    time.sleep(1)
    try:
        runs: dict[int, list[dict[str, float]]] = {5300: [], 5301: []}
        for _ in range(ROUNDS):  # interleaved, best of each: the two share this 2-core machine with dnsperf
            for port in runs:
                runs[port].append(dnsperf(port, qfile))
        ours, theirs = (max(runs[p], key=lambda r: r["qps"]) for p in (5300, 5301))
    finally:
        dm.terminate()
        dm.wait()
        server.stop()
    big = build(services(50000), {}, [])
    mem50 = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    del big
    print(f"dnsperf, best of {ROUNDS} interleaved runs of {SECONDS}s, 4 clients, A queries for {n // 7} of {n} Service names, loopback, one server process each:")
    for name, r in (("gingham", ours), ("dnsmasq", theirs)):
        print(f"  {name:8s} {r['qps']:9.0f} q/s   avg {r['avg_ms']:.3f} ms   max {r['max_ms']:.1f} ms   lost {r['lost']}")
    print(f"  ratio gingham/dnsmasq: {ours['qps'] / theirs['qps']:.2f}")
    print(f"  record index memory: ~{mem10:.0f} MB at 10,000 Services, ~{mem50:.0f} MB at 50,000 (RSS growth)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
