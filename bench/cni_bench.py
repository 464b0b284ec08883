"""CNI ADD+DEL per pod: reference bridge+host-local vs gingham (agent and in-process), one run.

Each sample: create a netns, ADD through the runtime (exec of the plugins, as containerd
does), DEL, delete the netns - the numbers the issue compares. Then 100 pods set up
concurrently (16 at a time) for pods/second. Run inside the sandbox: scripts/bench.sh cni.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from gingham.cni import install
from gingham.cni.shim import DEFAULT_SOCKET
from gingham.cni.runtime import Attachment, Network, Runtime
from gingham.kernel import netns


def conflist(name: str, prefix: str, br: str, subnet: str, data: str) -> Network:
    return Network.parse(json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": [
        {"type": prefix + "bridge", "bridge": br, "isGateway": True, "ipMasq": True,
         "ipam": {"type": prefix + "host-local", "dataDir": data, "ranges": [[{"subnet": subnet}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}}]}).encode())


def one(rt: Runtime, net: Network, i: int, tag: str) -> float:
    t = time.perf_counter()
    name = f"bn-{tag}-{i}"
    path = netns.add(name)
    att = Attachment(f"{tag}{i}", path)
    rt.add(net, att)
    rt.delete(net, att)
    netns.delete(name)
    return time.perf_counter() - t


def concurrent(rt: Runtime, net: Network, tag: str, n: int = 100) -> float:
    paths = [netns.add(f"bc-{tag}-{i}") for i in range(n)]
    t = time.perf_counter()
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: rt.add(net, Attachment(f"c{tag}{i}", paths[i])), range(n)))
    rate = n / (time.perf_counter() - t)
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: rt.delete(net, Attachment(f"c{tag}{i}", paths[i])), range(n)))
    for i in range(n):
        netns.delete(f"bc-{tag}-{i}")
    return rate


def main() -> None:
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    tmp = tempfile.mkdtemp(prefix="gingham-bench-")
    bin_dir = os.path.join(tmp, "bin")
    install.install(bin_dir)
    rt = Runtime(f"{bin_dir}:/usr/lib/cni", os.path.join(tmp, "cache"))
    ref = conflist("bref", "", "bref0", "10.77.0.0/16", os.path.join(tmp, "d1"))
    ours = conflist("bours", "gingham-", "bours0", "10.78.0.0/16", os.path.join(tmp, "d2"))
    sock = DEFAULT_SOCKET  # where the shims look; kubelet and containerd pass them no env of ours
    agent = None
    results: dict[str, list[float]] = {"reference": [], "gingham (agent)": [], "gingham (no agent)": []}
    try:
        agent = subprocess.Popen([sys.executable, "-m", "gingham.cli", "agent", "--cni-socket", sock])
        while not os.path.exists(sock):
            time.sleep(0.05)
        for warm in range(3):
            one(rt, ref, 900 + warm, "r"), one(rt, ours, 900 + warm, "g")
        for i in range(samples):  # interleaved, so drift hits both alike
            results["reference"].append(one(rt, ref, i, "r"))
            results["gingham (agent)"].append(one(rt, ours, i, "g"))
        rate_ref = concurrent(rt, ref, "r")
        rate_ours = concurrent(rt, ours, "g")
        agent.terminate()
        agent.wait()
        agent = None
        for i in range(max(samples // 3, 5)):
            results["gingham (no agent)"].append(one(rt, ours, 500 + i, "n"))
    finally:
        if agent:
            agent.terminate()
        for br in ("bref0", "bours0"):
            subprocess.run(["ip", "link", "delete", br], capture_output=True)
    ref_ms = statistics.median(results["reference"]) * 1000
    print(f"netns create + ADD + DEL + netns delete, bridge+host-local, median of {samples}:")
    for k, v in results.items():
        ms = statistics.median(v) * 1000
        print(f"  {k:20s} {ms:7.1f} ms   ratio to reference {ms / ref_ms:5.2f}")
    print(f"100 pods set up concurrently (16 at a time): reference {rate_ref:.1f} pods/s, "
          f"gingham (agent) {rate_ours:.1f} pods/s, ratio {rate_ours / rate_ref:.2f}")


if __name__ == "__main__":
    main()
