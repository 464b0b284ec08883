"""`gingham demo`: two pods on one bridge, set up through the gingham CNI plugins, talking.

Meant to run in a sandbox (scripts/demo.sh makes one): it creates a bridge and nft
tables in the current network namespace and removes them again at the end.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time

from .cni import install
from .cni.runtime import Attachment, Network, Runtime
from .kernel import netns, nft
from .cni.plugins.bridge import MASQ_TABLE
from .cni.plugins.portmap import TABLE as HOSTPORT_TABLE
from .kernel.links import Netlink
from .kernel.nftables import Transaction
from .lab.probe import probe

CONFLIST = {
    "cniVersion": "1.1.0", "name": "demo",
    "plugins": [
        {"type": "gingham-bridge", "bridge": "demo0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
         "ipam": {"type": "gingham-host-local", "ranges": [[{"subnet": "10.88.0.0/24"}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "gingham-portmap", "capabilities": {"portMappings": True}},
        {"type": "gingham-loopback"},
    ],
}


def run() -> int:
    tmp = tempfile.mkdtemp(prefix="gingham-demo-")
    CONFLIST["plugins"][0]["ipam"]["dataDir"] = os.path.join(tmp, "networks")  # type: ignore[index]
    net = Network.parse(json.dumps(CONFLIST).encode())
    rt = Runtime(os.path.join(tmp, "bin"), os.path.join(tmp, "cache"))
    install.install(rt.cni_path)
    pods = {"pod-a": netns.add("demo-pod-a"), "pod-b": netns.add("demo-pod-b")}
    procs = []
    try:
        ips = {}
        for i, (name, path) in enumerate(pods.items()):
            caps = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]} if i == 1 else {}
            t = time.monotonic()
            res = rt.add(net, Attachment(name, path, "eth0", cap_args=caps))
            ips[name] = res["ips"][0]["address"].split("/")[0]
            print(f"CNI ADD {name}: eth0 {res['ips'][0]['address']} via {res['ips'][0]['gateway']} "
                  f"(host veth {res['interfaces'][1]['name']} on bridge {res['interfaces'][0]['name']}) "
                  f"in {1000 * (time.monotonic() - t):.0f} ms")
            procs.append(subprocess.Popen([sys.executable, "-m", "gingham.lab.workload", "--name", name, "--tcp", "80"],
                                          preexec_fn=functools.partial(netns.join, path)))  # in the pod's namespace
        time.sleep(0.5)
        checks = [
            ("pod-a -> pod-b", pods["pod-a"], ips["pod-b"], 80),
            ("pod-b -> pod-a", pods["pod-b"], ips["pod-a"], 80),
            ("host -> pod-a", None, ips["pod-a"], 80),
            ("host -> localhost:8080 (hostPort of pod-b)", None, "127.0.0.1", 8080),
        ]
        ok = True
        for label, src, dst, port in checks:
            if src:
                with netns.entered(src):
                    who = probe(dst, port)
            else:
                who = probe(dst, port)
            ok &= who is not None
            print(f"  {label:45s} {dst}:{port:<5} answered by {who or 'NOBODY'}")
        return 0 if ok else 1
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        for name, path in pods.items():
            rt.delete(net, Attachment(name, path, "eth0"))
            netns.delete(os.path.basename(path))
        with Netlink() as nl:
            nl.delete("demo0")
        for table in (MASQ_TABLE, HOSTPORT_TABLE):
            try:
                nft.run(Transaction("inet", table).delete_table())
            except nft.NftError:
                pass  # not made (a failed run): nothing to remove
        print("cleaned up: pods deleted through CNI DEL, bridge and tables removed")
