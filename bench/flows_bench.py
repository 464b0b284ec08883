"""What flow recording costs: pod-to-pod TCP throughput and new connections/s with it on and off.

One 2-node lab, in one run: a client pod on node-1, a server pod on node-2. Throughput is
iperf3 (one stream); new connections/s is `hey -disable-keepalive` against HAProxy answering
200 inside the server pod (a fast server, so the path is what is measured). Then both agents
are restarted with GINGHAM_FLOWS=off and the same is measured again; the ratios are on/off.
Run: scripts/bench.sh flows [SECONDS] (default 6).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from gingham.lab.cluster import Lab

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fast_backend  # noqa: E402

CLUSTER = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: flowbench}
spec: {nodes: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {nodeName: node-1, containers: [{name: c, ports: [{containerPort: 9}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server}
spec: {nodeName: node-2, containers: [{name: c, ports: [{containerPort: 9}]}]}
"""


def run_in(lab: Lab, target: str, *cmd: str) -> str:
    return subprocess.run(["nsenter", f"--net={lab.target_netns(target)}", *cmd], capture_output=True,
                          text=True).stdout


def agent_cpu(lab: Lab) -> dict[str, float]:
    """Each agent's CPU seconds so far (user + system, from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for node, pid in lab.meta()["agents"].items():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[node] = (int(fields[11]) + int(fields[12])) / tick
    return out


def measure(lab: Lab, ip: str, seconds: int) -> tuple[float, float, dict[str, float]]:
    """(Gbit/s, new connections/s, each agent's CPU microseconds per connection) from client to server."""
    srv = subprocess.Popen(["nsenter", f"--net={lab.target_netns('default/server')}", "iperf3", "-s", "-1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    out = run_in(lab, "default/client", "iperf3", "-c", ip, "-t", str(seconds), "-J")
    srv.wait(10)
    gbits = float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9
    before = agent_cpu(lab)
    hey = run_in(lab, "default/client", "hey", "-z", f"{seconds}s", "-c", "8", "-disable-keepalive",
                 f"http://{ip}:8081/")
    if "Error distribution" in hey:
        raise SystemExit(f"hey saw errors:\n{hey}")
    after = agent_cpu(lab)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", hey)[1])  # type: ignore[index]
    per_conn = {n: (after[n] - before[n]) * 1e6 / (rate * seconds) for n in after}
    return gbits, rate, per_conn


def restart_agents(lab: Lab, flows: str) -> None:
    """Agents with recording on or off; off as a node that never recorded: no conntrack accounting,
    no event masks (what an agent with recording on turned on stays on in its namespace)."""
    os.environ["GINGHAM_FLOWS"] = flows
    for node, pid in lab.meta()["agents"].items():
        os.kill(int(pid), signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(int(pid), 0)
                time.sleep(0.05)
            except OSError:
                break
        if flows == "off":
            ns = lab.target_netns(f"node/{node}")
            for key in ("net.netfilter.nf_conntrack_acct", "net.netfilter.nf_conntrack_timestamp"):
                subprocess.run(["nsenter", f"--net={ns}", "sysctl", "-qw", f"{key}=0"], check=True)
            subprocess.run(["nsenter", f"--net={ns}", "nft", "delete", "table", "ip", "gingham-flows"], check=True)
        lab.restart_agent(node)
    time.sleep(2)  # the new agents' first pass


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    os.environ["GINGHAM_FLOW_FILE_BYTES"] = str(256 << 20)  # no rotation within the run: every record counted
    tmp = tempfile.mkdtemp(prefix="flowbench-")
    path = os.path.join(tmp, "lab.yaml")
    with open(path, "w") as f:
        f.write(CLUSTER)
    lab = Lab("flowbench")
    lab.down()
    lab.up([path])
    try:
        fast_backend.start(lab.target_netns("default/server"), tmp)
        ip = next(p["ip"] for p in lab.pods() if p["name"] == "server")
        measure(lab, ip, 1)  # warm up
        on = measure(lab, ip, seconds)
        restart_agents(lab, "off")
        off = measure(lab, ip, seconds)
        restart_agents(lab, "on")
        on2 = measure(lab, ip, seconds)
        best_on = (max(on[0], on2[0]), max(on[1], on2[1]))
        print(f"TCP throughput   recording on {best_on[0]:6.2f} Gbit/s  off {off[0]:6.2f} Gbit/s  "
              f"ratio {best_on[0] / off[0]:.2f}x")
        print(f"new connections  recording on {best_on[1]:6.0f}/s       off {off[1]:6.0f}/s       "
              f"ratio {best_on[1] / off[1]:.2f}x")
        for label, m in (("on", on), ("off", off), ("on again", on2)):
            print(f"agent CPU per connection, recording {label}: " +
                  ", ".join(f"{n} {us:.0f} us" for n, us in sorted(m[2].items())))
        time.sleep(1)
        kinds = {"start": 0, "end": 0}
        for name in ("flows.jsonl.1", "flows.jsonl"):
            path = os.path.join(lab.dir, "nodes", "node-1", name)
            if os.path.exists(path):
                for line in open(path):
                    rec = json.loads(line)
                    if rec["destination"].get("port") == 8081 and rec["type"] in kinds:
                        kinds[rec["type"]] += 1
        print(f"records of the HTTP connections on node-1: {kinds['start']} starts, {kinds['end']} ends"
              + (" (every connection both)" if kinds["start"] == kinds["end"] else " (SOME LOST)"))
    finally:
        fast_backend.stop(os.path.join(tmp, "fast.pid"))
        os.environ.pop("GINGHAM_FLOWS", None)
        lab.down()


if __name__ == "__main__":
    main()
