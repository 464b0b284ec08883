"""Services at scale: full sync, one-change sync, agent memory, and connection latency.

The node is this (sandboxed) namespace; one backend pod is a namespace on a veth. Every
Service has 3 endpoints (the backend and two addresses that are never chosen by the
probe's Service). kube-proxy nftables' published figures are the reference
(reference/services.md): ~141 ms to add one Service with 10,000 present, first-packet
latency flat at ~0.01-0.035 ms from 5,000 to 30,000 Services. Run: scripts/bench.sh services.
"""

from __future__ import annotations

import ipaddress
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time

from gingham.kernel import netns, nft
from gingham.model.services import Endpoint, Service, ServicePort
from gingham.services.compile import NodeContext
from gingham.services.proxy import ServiceProxy

CTX = NodeContext("node-1", "192.168.50.1", "10.244.0.0/16", "10.96.0.0/12")
BACKEND = "10.244.0.2"
CLIENT = "10.244.1.2"


def make(n: int, probe_backend: bool = True) -> tuple[list[Service], dict[str, list[Endpoint]]]:
    base = ipaddress.ip_address("10.96.0.11")
    services, eps = [], {}
    for i in range(n):
        s = Service("bench", f"s{i}", "ClusterIP", str(base + i), (ServicePort("", "TCP", 80, 8080),), {"app": f"s{i}"})
        services.append(s)
        ips = [BACKEND] if (i == 0 and probe_backend) else [f"10.245.{(i >> 8) & 255}.{i & 255}",
                                                             f"10.246.{(i >> 8) & 255}.{i & 255}",
                                                             f"10.247.{(i >> 8) & 255}.{i & 255}"]
        eps[s.key] = [Endpoint(ip, "node-2", f"bench/p{i}-{j}", ports=(("", "TCP", 8080),)) for j, ip in enumerate(ips)]
    return services, eps


def setup_backend() -> subprocess.Popen[bytes]:
    netns.add("bench-pod")
    for cmd in (["ip", "link", "add", "bp0", "type", "veth", "peer", "eth0", "netns", "bench-pod"],
                ["ip", "addr", "add", "10.244.0.1/24", "dev", "bp0"], ["ip", "link", "set", "bp0", "up"],
                ["ip", "-n", "bench-pod", "addr", "add", f"{BACKEND}/24", "dev", "eth0"],
                ["ip", "-n", "bench-pod", "link", "set", "eth0", "up"], ["ip", "-n", "bench-pod", "link", "set", "lo", "up"],
                ["ip", "-n", "bench-pod", "route", "add", "default", "via", "10.244.0.1"],
                ["ip", "addr", "add", "192.168.50.1/24", "dev", "lo"],
                ["ip", "route", "add", "10.96.0.0/12", "dev", "bp0"]):
        subprocess.run(cmd, check=True)
    netns.add("bench-client")  # a client pod on its own veth: pod -> ClusterIP goes through prerouting
    for cmd in (["ip", "link", "add", "bc0", "type", "veth", "peer", "eth0", "netns", "bench-client"],
                ["ip", "addr", "add", "10.244.1.1/24", "dev", "bc0"], ["ip", "link", "set", "bc0", "up"],
                ["ip", "-n", "bench-client", "addr", "add", f"{CLIENT}/24", "dev", "eth0"],
                ["ip", "-n", "bench-client", "link", "set", "eth0", "up"],
                ["ip", "-n", "bench-client", "link", "set", "lo", "up"],
                ["ip", "-n", "bench-client", "route", "add", "default", "via", "10.244.1.1"],
                ["sysctl", "-qw", "net.ipv4.ip_forward=1"]):
        subprocess.run(cmd, check=True)
    srv = subprocess.Popen(["ip", "netns", "exec", "bench-pod", sys.executable, "-m", "gingham.lab.workload",
                            "--name", "backend", "--tcp", "8080"])
    time.sleep(0.5)
    return srv


def connect_latency(targets: list[tuple[str, int]], n: int = 2000) -> list[float]:
    """Median connect() time in ms to each target, the targets taken in turn within every
    round so that both see the same machine (frequency, caches, the other core's load)."""
    ts: list[list[float]] = [[] for _ in targets]
    for _ in range(n):
        for i, addr in enumerate(targets):
            s = socket.socket()
            t = time.perf_counter()
            s.connect(addr)
            ts[i].append(time.perf_counter() - t)
            s.close()
    return [statistics.median(x) * 1000 for x in ts]


def latency_ratio(cluster_ip: str, rounds: int = 5) -> tuple[float, float, float]:
    """ClusterIP and direct medians over all rounds, and the median of the rounds' ratios:
    a round's ratio compares samples taken side by side, the median of five drops an odd one."""
    rs = [connect_latency([(cluster_ip, 80), (BACKEND, 8080)], 600) for _ in range(rounds)]
    ratios = sorted(a / b for a, b in rs)
    return statistics.median(a for a, _ in rs), statistics.median(b for _, b in rs), ratios[rounds // 2]


def main() -> None:
    sizes = [int(x) for x in sys.argv[1:]] or [1, 1000, 10000, 30000]
    # client, backend and their softirqs on one core: on this VM, a connection whose two ends
    # wake on different cores varies by +-15% from run to run, which drowns a few microseconds
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    srv = setup_backend()
    try:
        (direct0,) = connect_latency([(BACKEND, 8080)])
        print(f"connect to the pod directly: {direct0:.3f} ms (median of 2000)")
        print(f"{'services':>9} {'full sync':>9} {'1 endpoint':>11} {'1 service':>10} {'no hint':>10} "
              f"{'rss MB':>7} | from the node: {'ClusterIP':>9} {'direct':>8} {'ratio':>6} "
              f"| from a pod: {'ClusterIP':>9} {'direct':>8} {'ratio':>6}")
        for n in sizes:
            services, eps = make(n)
            proxy = ServiceProxy(CTX, nft.run)
            t = time.perf_counter()
            proxy.sync(services, eps)
            t_full = time.perf_counter() - t
            # one endpoint of one Service changes (the agent knows which, as an informer would tell it)
            eps2 = dict(eps)
            k = services[n // 2].key
            eps2[k] = eps[k][:2] + [Endpoint("10.248.0.1", "node-3", "bench/new", ports=(("", "TCP", 8080),))]
            t = time.perf_counter()
            proxy.sync(services, eps2, changed={k})
            t_ep = time.perf_counter() - t
            # one Service added
            extra = Service("bench", "extra", "ClusterIP", "10.111.0.1", (ServicePort("", "TCP", 80, 8080),), {})
            eps3 = {**eps2, extra.key: [Endpoint("10.248.0.2", "node-3", "bench/x", ports=(("", "TCP", 8080),))]}
            t = time.perf_counter()
            proxy.sync(services + [extra], eps3, changed={extra.key})
            t_svc = time.perf_counter() - t
            # the same change found without a hint: every Service compared
            eps4 = {**eps3, k: eps[k]}
            t = time.perf_counter()
            proxy.sync(services + [extra], eps4)
            t_scan = time.perf_counter() - t
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            lat, direct, ratio = latency_ratio(services[0].cluster_ip)
            with netns.entered(netns.path_of("bench-client")):
                pod_lat, pod_direct, pod_ratio = latency_ratio(services[0].cluster_ip)
            print(f"{n:9d} {t_full:8.2f}s {t_ep * 1000:10.1f}ms {t_svc * 1000:9.1f}ms {t_scan * 1000:9.1f}ms "
                  f"{rss:7.0f} | {'':15}{lat:7.3f}ms {direct:6.3f}ms {ratio:6.2f} "
                  f"| {'':12}{pod_lat:7.3f}ms {pod_direct:6.3f}ms {pod_ratio:6.2f}")
            nft.run("delete table ip gingham-services\n")
    finally:
        srv.terminate()
        srv.wait()
        netns.delete("bench-pod")
        netns.delete("bench-client")


if __name__ == "__main__":
    threading.stack_size(1 << 20)
    main()
