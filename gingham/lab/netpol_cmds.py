"""`gingham netpol matrix|explain`: the reachability truth table and the reason for one cell (a CLI, so it lives
above the agent and the lab it reads). The parser is in netpol_cli.py, which imports this only to run."""

from __future__ import annotations

import argparse
import ipaddress
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..kernel import netns
from ..netpol.world import world_of
from .cluster import Lab, LabError
from .store import STATUS
from .probe import probe
from ..model import manifest
from ..model.errors import BAD_INPUT
from ..model.netpol import parse_policy
from ..netpol.evaluate import PodInfo, World, evaluate


def world_from_file(files: list[str]) -> World:
    """A world with no lab: pods get addresses in node order, as the lab's agents would hand them out."""
    state = manifest.schedule(manifest.parse(files))
    cidrs = state.cluster.node_cidrs()
    counters = {n: 2 for n in state.cluster.nodes}
    pods = []
    for p in state.pods.values():
        ip = str(ipaddress.ip_network(cidrs[p.node_name]).network_address + counters[p.node_name])
        counters[p.node_name] += 1
        pods.append(PodInfo(p.namespace, p.name, p.labels, ip, p.node_name,
                            tuple((x.name, x.protocol, x.port) for x in p.ports)))
    policies = [parse_policy(o.namespace, o.name, o.raw) for o in state.objects.values() if o.kind == "NetworkPolicy"]
    return World(pods, {n: dict(o.labels) for n, o in state.namespaces.items()}, policies)


def world_from_lab(lab: Lab) -> World:
    cache = lab.cache()
    return world_of(cache.state(), cache.pod_status, cache.node_dicts(), cache.policies.values())


def probe_matrix(lab: Lab, world: World, pods: list[PodInfo], port: int, protocol: str) -> dict[tuple[str, str], bool]:
    def one(pair: tuple[PodInfo, PodInfo]) -> tuple[tuple[str, str], bool]:
        a, b = pair
        with netns.entered(lab.target_netns(a.key)):
            return (a.key, b.key), probe(b.ip, port, protocol, 0.6) is not None
    with ThreadPoolExecutor(16) as ex:
        return dict(ex.map(one, [(a, b) for a in pods for b in pods]))


def kernel_matrix(lab: Lab, pods: list[PodInfo], port: int, protocol: str) -> dict[tuple[str, str], bool]:
    """Every cell as the nodes' NetworkPolicy tables decide it, traced (lab/trace.py), no traffic sent."""
    from .trace import NodeTables, policy_verdict
    tables = NodeTables(lab)
    nodes = lab.cache(STATUS).node_dicts()
    by_ip = {p["ip"]: p for p in lab.pods() if p["ip"]}
    return {(a.key, b.key): a.key == b.key or  # a pod reaching itself never leaves its namespace
            policy_verdict(tables, nodes, by_ip, a.node, False, a.ip, False, b.ip, port, protocol)["allowed"]
            for a in pods for b in pods}


def cmd_matrix(a: argparse.Namespace) -> int:
    lab = Lab(a.lab) if a.lab else None
    world = world_from_lab(lab) if lab else world_from_file(a.file)
    pods = sorted((p for p in world.pods if p.namespace != "kube-system"), key=lambda p: p.key)
    truth = {(x.key, y.key): evaluate(world, x.ip, y.ip, a.port, a.protocol).allowed for x in pods for y in pods}
    if (a.probe or a.kernel) and not lab:
        raise LabError("--probe and --kernel read a running lab: give --lab", BAD_INPUT)
    checked = probe_matrix(lab, world, pods, a.port, a.protocol) if (a.probe and lab) else \
        kernel_matrix(lab, pods, a.port, a.protocol) if (a.kernel and lab) else {}
    how = "probed" if a.probe else "traced in the kernel's tables"
    disagree = sorted(k for k in checked if checked[k] != truth[k])
    if a.output == "json":
        print(json.dumps({"port": a.port, "protocol": a.protocol, "pods": [p.key for p in pods],
                          "allowed": {f"{x} -> {y}": v for (x, y), v in truth.items()},
                          ("probed" if a.probe else "kernel"): {f"{x} -> {y}": v for (x, y), v in checked.items()},
                          "disagreements": [f"{x} -> {y}" for x, y in disagree]}, indent=2))
        return 1 if disagree else 0
    w = max(len(p.key) for p in pods) if pods else 4
    print(f"{a.port}/{a.protocol}: rows connect to columns; . allowed, X denied"
          + ("; ! where the kernel disagrees with the evaluator" if checked else ""))
    print(" " * w + "  " + " ".join(str(i % 10) for i in range(len(pods))))
    for i, x in enumerate(pods):
        cells = []
        for y in pods:
            c = "." if truth[(x.key, y.key)] else "X"
            if checked and checked[(x.key, y.key)] != truth[(x.key, y.key)]:
                c = "!"
            cells.append(c)
        print(f"{x.key.ljust(w)}  {' '.join(cells)}   {i % 10}")
    if checked:
        print(f"{how}: {len(checked)} cells, {len(disagree)} disagreement(s)" +
              "".join(f"\n  {x} -> {y}: evaluator {'allows' if truth[(x, y)] else 'denies'}, kernel "
                      f"{'allows' if checked[(x, y)] else 'denies'}" for x, y in disagree))
    return 1 if disagree else 0


def _ip(world: World, what: str) -> str:
    for p in world.pods:
        if p.key == what:
            return p.ip
    try:
        return str(ipaddress.ip_address(what))
    except ValueError:
        raise LabError(f"{what!r} is neither a pod (NS/NAME) nor an IP address", BAD_INPUT) from None


def cmd_explain(a: argparse.Namespace) -> int:
    world = world_from_lab(Lab(a.lab)) if a.lab else world_from_file(a.file)
    v = evaluate(world, _ip(world, a.source), _ip(world, a.dest), a.port, a.protocol)
    out: dict[str, Any] = {"allowed": v.allowed, "egress": v.egress.__dict__, "ingress": v.ingress.__dict__}
    if a.output == "json":
        print(json.dumps(out, indent=2))
    else:
        print(f"{a.source} -> {a.dest} {a.port}/{a.protocol}: {'ALLOWED' if v.allowed else 'DENIED'}")
        print(f"  egress  ({a.source}): {'allow' if v.egress.allowed else 'deny '}  {v.egress.reason}")
        print(f"  ingress ({a.dest}): {'allow' if v.ingress.allowed else 'deny '}  {v.ingress.reason}")
    return 0 if v.allowed else 1


