"""The lab's side of overlay bgp: a router for each external peer, and `lab get routes`.

The routers (gingham/lab/topology.py says which) forward and, as BGP peers, run BIRD 2
(gingham/bgp/bird.py's router_config: eBGP with every node, equal routes merged into one
multipath route, flows spread by their ports: `fib_multipath_hash_policy` 1). The `external` client routes the pod network and the
LoadBalancer pool through the first router, as a client beyond a real router would.

`routes` reads a BGP speaker's sessions and routes from its control socket (birdc).
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import time
from typing import Any

from ..bgp.bird import router_config
from ..kernel import netns
from ..model.objects import Cluster
from ..model.errors import BAD_INPUT, NOT_FOUND
from .cluster import LabError

def start_router(path: str, state_dir: str, addresses: list[str], as_number: int, cluster: Cluster,
                 nodes: dict[str, dict[str, str]]) -> int:
    """Forwarding on in the router's namespace and, when it has an AS, BIRD there; BIRD's pid (0: none)."""
    ns = ["nsenter", f"--net={path}"]
    for key in ("net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"):
        subprocess.run([*ns, "sysctl", "-qw", key], check=True)
    if not as_number:
        return 0
    os.makedirs(state_dir, exist_ok=True)
    conf = os.path.join(state_dir, "bird.conf")
    with open(conf, "w") as f:
        f.write(router_config(addresses, as_number, cluster, nodes))
    log = open(os.path.join(state_dir, "bird.log"), "ab")
    proc = subprocess.Popen([*ns, "bird", "-f", "-c", conf, "-s", os.path.join(state_dir, "bird.ctl"),
                             "-P", os.path.join(state_dir, "bird.pid")],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 5
    while not os.path.exists(os.path.join(state_dir, "bird.ctl")):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"the router's BIRD did not start; see {os.path.join(state_dir, 'bird.log')}")
        time.sleep(0.02)
    return proc.pid


def route_external(path: str, via: str, cluster: Cluster) -> None:
    """The external client reaches the pod network and the LoadBalancer pool through `via`."""
    from ..kernel.links import Netlink
    from ..model.pool import parse_pool
    nets = [cluster.pod_cidr]
    if cluster.load_balancer_pool:
        pool = parse_pool(cluster.load_balancer_pool)
        nets += [str(n) for n in ipaddress.summarize_address_range(ipaddress.IPv4Address(pool.first),
                                                                   ipaddress.IPv4Address(pool.last))]
    with netns.entered(path), Netlink() as nl:
        eth0 = nl.require("eth0").index
        for net in nets:
            nl.add_route(net, eth0, gw=via, replace=True)


def wait_routes(lab: Any, nodes: dict[str, dict[str, str]], timeout: float = 30.0) -> None:
    """Until every node routes every other node's pod CIDR to that node (BGP sessions up,
    routes in the kernel): what `lab up` waits for with overlay bgp before it returns."""
    from ..kernel.links import Netlink
    deadline = time.monotonic() + timeout
    missing: dict[str, list[str]] = {}
    while True:
        missing = {}
        for name in nodes:
            want = [v["podCIDR"] for n, v in nodes.items() if n != name]
            with netns.entered(netns.path_of(lab.ns(f"node-{name}"))), Netlink() as nl:
                have = {r["dst"] for r in nl.routes() if r.get("gw")}  # via the node, or its rack's router
            lacking = [cidr for cidr in want if cidr not in have]
            if lacking:
                missing[name] = lacking
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if missing:
        raise LabError("BGP: after %.0f s these nodes still lack routes to pod CIDRs (see gingham lab get routes): %s"
                       % (timeout, "; ".join(f"{n}: {', '.join(c)}" for n, c in sorted(missing.items()))))


# -- reading: birdc ----------------------------------------------------------------------------
_PROTO = re.compile(r"^(\S+)\s+(\S+)\s+\S+\s+(\S+)\s+(\S+)\s*(.*)$")  # name proto table state since info
_ROUTE = re.compile(r"^(\d+\.\d+\.\d+\.\d+/\d+)?\s+(\w+)\s+\[(\S+) [^\]]*\]( \*)?")
_VIA = re.compile(r"^\s+via (\S+) on (\S+)")
_COUNTS = re.compile(r"Routes:\s+(\d+) imported, (?:\d+ filtered, )?(\d+) exported")


def parse_protocols(text: str) -> list[dict[str, Any]]:
    """`birdc show protocols all`: each BGP session's name, state, since when, what it says, and
    its routes imported and exported."""
    out: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None  # the BGP session whose details follow
    for line in text.splitlines():
        m = _PROTO.match(line)
        if m and m[1] != "Name":
            cur = None
            if m[2] == "BGP":
                cur = {"name": m[1], "state": m[5].split("  ")[0].strip() or m[3], "since": m[4],
                       "imported": 0, "exported": 0, "neighbor": "", "as": 0}
                out.append(cur)
            continue
        if cur is None:
            continue
        if (c := _COUNTS.search(line)) is not None:
            cur["imported"], cur["exported"] = int(c[1]), int(c[2])
        elif line.strip().startswith("Neighbor address:"):
            cur["neighbor"] = line.split(":", 1)[1].strip()
        elif line.strip().startswith("Neighbor AS:"):
            cur["as"] = int(line.split(":", 1)[1].strip())
    return out


def parse_routes(text: str) -> list[dict[str, Any]]:
    """`birdc show route`: each route's prefix, kind (unicast, blackhole), the protocol it came
    from, whether it is the best, and its next hops."""
    out: list[dict[str, Any]] = []
    prefix = ""
    for line in text.splitlines():
        m = _ROUTE.match(line)
        if m:
            prefix = m[1] or prefix
            out.append({"prefix": prefix, "kind": m[2], "from": m[3], "best": bool(m[4]), "via": []})
        elif (v := _VIA.match(line)) is not None and out:
            out[-1]["via"].append(v[1])
    return out


def birdc(socket_path: str, path: str, *command: str) -> str:
    r = subprocess.run(["nsenter", f"--net={path}", "birdc", "-s", socket_path, *command],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise LabError(f"birdc {' '.join(command)}: {(r.stderr or r.stdout).strip() or 'BIRD does not answer'}")
    return r.stdout


def speaker_routes(lab: Any, target: str | None) -> dict[str, dict[str, Any]]:
    """Sessions and routes of every BGP speaker of the lab (the nodes' BIRDs and the routers'),
    or of one: node/NAME, router (router-1...)."""
    meta = lab.meta()
    speakers: dict[str, tuple[str, str]] = {}
    for n in lab.nodes():
        speakers[f"node/{n['name']}"] = (os.path.join(lab.node_dir(n["name"]), "bird.ctl"),
                                         netns.path_of(lab.ns(f"node-{n['name']}")))
    for name in meta.get("routers") or {}:
        speakers[name] = (os.path.join(lab.dir, name, "bird.ctl"), netns.path_of(lab.ns(name)))
    if target is not None:
        if target not in speakers:
            raise LabError(f"no BGP speaker {target!r} in lab {lab.name} (there are: {', '.join(speakers)})", NOT_FOUND)
        speakers = {target: speakers[target]}
    if not any(os.path.exists(sock) for sock, _ in speakers.values()):
        raise LabError(f"lab {lab.name} runs no BGP (its Cluster's overlay is not bgp)", BAD_INPUT)
    out = {}
    for who, (sock, path) in speakers.items():
        out[who] = {"sessions": parse_protocols(birdc(sock, path, "show", "protocols", "all")),
                    "routes": parse_routes(birdc(sock, path, "show", "route"))}
    return out
