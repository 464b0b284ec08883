"""The ingress as a user meets it, from `external`, side by side with the same backend reached directly.

A 2-node lab. The backend is fast on purpose, so that the proxy is what is measured: HAProxy
run inside a pod (`lab exec`-style, in the pod's namespace) answering every request with a
fixed 200. The same pod is reached two ways in one run:
  direct   its own LoadBalancer Service (kube-proxy's DNAT straight to the pod)
  ingress  the ingress address (DNAT to a node's HAProxy, which proxies to the pod)
with `hey` (requests/s, p50 and p99 latency). Then: TLS handshakes/s through the ingress
(hey without keep-alive: a handshake per request) beside `openssl speed ecdsap256` signatures/s, the bound for the
ECDSA P-256 certificates the lab makes; how long a new Ingress takes to answer with 1,000
Ingresses present; and how long a new endpoint takes to receive requests (runtime API).
Run: scripts/bench.sh ingress [SECONDS] (default 8 per load run).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time

from gingham.kernel import netns
from gingham.lab.cluster import Lab

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fast_backend  # noqa: E402

CLUSTER = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: ingbench}
spec: {nodes: 2, loadBalancerPool: 192.168.200.200-192.168.200.220}
---
apiVersion: v1
kind: Pod
metadata: {name: fast-0, labels: {app: fast}}
spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 9}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: fast}
spec: {type: LoadBalancer, selector: {app: fast}, ports: [{port: 80, targetPort: 8081}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: fast}
spec:
  tls: [{hosts: [fast.example.com], secretName: fast-tls}]
  rules:
  - host: fast.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: fast, port: {number: 80}}}}]
"""



def hey(lab: Lab, url: str, seconds: int, host: str = "", *extra: str) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of hey from external; every response must be a 200."""
    args = ["hey", "-z", f"{seconds}s", "-c", "16", *extra] + (["-host", host] if host else []) + [url]
    out = subprocess.run(["nsenter", f"--net={lab.target_netns('external')}", *args], capture_output=True,
                         text=True).stdout
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    if list(codes) != ["200"] or "Error distribution" in out:
        raise SystemExit(f"hey {url}: not all 200s:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", out)[1]) * 1000  # type: ignore[index]
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out)[1]) * 1000  # type: ignore[index]
    return rps, p50, p99


def get(ip: str, host: str) -> tuple[int, bytes]:
    with socket.create_connection((ip, 80), timeout=2) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split()[1]), data


def until(lab: Lab, check, limit: float = 30.0) -> float:
    """Seconds until `check()` (run in external's namespace) is true, polled every 5 ms."""
    t = time.perf_counter()
    with netns.entered(lab.target_netns("external")):
        while True:
            try:
                if check():
                    return time.perf_counter() - t
            except OSError:
                pass
            if time.perf_counter() - t > limit:
                raise SystemExit("timed out")
            time.sleep(0.005)


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    from gingham.ingress import certs
    tmp = tempfile.mkdtemp(prefix="ingbench-")
    cert, key = certs.make_cert(["fast.example.com"], certs.make_ca())
    path = os.path.join(tmp, "lab.yaml")
    with open(path, "w") as f:
        f.write(CLUSTER + "---\n" + certs.secret_manifest("default", "fast-tls", cert, key))
    lab = Lab("ingbench")
    lab.down()
    lab.up([path])
    pid_file = os.path.join(tmp, "fast.pid")
    try:
        fast_backend.start(lab.target_netns("default/fast-0"), tmp)
        services = {s["name"]: s for s in lab.services()}
        direct, ingress = services["fast"]["externalIP"], services["gingham-ingress"]["externalIP"]
        until(lab, lambda: get(ingress, "fast.example.com")[0] == 200)
        hey(lab, f"http://{direct}/", 2)  # warm both paths
        hey(lab, f"http://{ingress}/", 2, "fast.example.com")
        d = hey(lab, f"http://{direct}/", seconds)
        i = hey(lab, f"http://{ingress}/", seconds, "fast.example.com")
        print(f"requests/s  direct {d[0]:8.0f}  ingress {i[0]:8.0f}  ratio {i[0] / d[0]:.2f}x")
        print(f"p50 ms      direct {d[1]:8.2f}  ingress {i[1]:8.2f}")
        print(f"p99 ms      direct {d[2]:8.2f}  ingress {i[2]:8.2f}")

        plain = hey(lab, f"http://{ingress}/", seconds, "fast.example.com", "-disable-keepalive")[0]
        handshakes = hey(lab, f"https://{ingress}/", seconds, "fast.example.com", "-disable-keepalive")[0]
        print(f"new connections/s through the ingress, plain HTTP (hey without keep-alive) {plain:.0f}")
        speed = subprocess.run(["openssl", "speed", "-seconds", "3", "ecdsap256"], capture_output=True, text=True).stdout
        signs = float(re.search(r"256 bits ecdsa \(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)", speed)[1])  # type: ignore[index]
        print(f"TLS handshakes/s through the ingress (hey, a new connection per request) {handshakes:.0f}; "
              f"openssl speed ecdsap256 sign/s on one core {signs:.0f} ({handshakes / signs:.2f}x)")

        many = os.path.join(tmp, "many.yaml")
        with open(many, "w") as f:
            f.write("".join(f"""---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: i{n}}}
spec:
  rules:
  - host: h{n}.example.com
    http:
      paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: fast, port: {{number: 80}}}}}}}}]
""" for n in range(1000)))
        t = time.perf_counter()
        lab.apply([many])
        until(lab, lambda: get(ingress, "h999.example.com")[0] == 200)
        print(f"1,000 Ingresses applied at once: answering {time.perf_counter() - t:.2f}s after lab apply started")
        one = os.path.join(tmp, "one.yaml")
        with open(one, "w") as f:
            f.write("""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: new}
spec:
  rules:
  - host: new.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: fast, port: {number: 80}}}}]
""")
        t = time.perf_counter()
        lab.apply([one])
        applied = time.perf_counter() - t
        live = applied + until(lab, lambda: get(ingress, "new.example.com")[0] == 200)
        print(f"one new Ingress among 1,000: lab apply returned in {applied:.2f}s, answering {live:.2f}s after it "
              "started")
        pod = os.path.join(tmp, "pod.yaml")
        with open(pod, "w") as f:
            f.write("""apiVersion: v1
kind: Pod
metadata: {name: fast-1, labels: {app: fast}}
spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 8081}]}]}
""")
        t = time.perf_counter()
        lab.apply([pod])
        applied = time.perf_counter() - t
        live = applied + until(lab, lambda: b'"pod": "fast-1"' in get(ingress, "fast.example.com")[1])
        print(f"a new endpoint: lab apply returned in {applied:.2f}s (the pod started and became ready), "
              f"receiving requests {live:.2f}s after it started ({(live - applied) * 1000:.0f} ms after apply returned)")
    finally:
        fast_backend.stop(pid_file)
        lab.down()


if __name__ == "__main__":
    main()
