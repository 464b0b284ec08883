"""`gingham lab trace`: what the node's Services rules do with a new connection, read from the kernel.

The source decides which node's table the packet meets first: a pod's own node, the
node itself for `node/NAME`, and for `external` the node its route (or the address's
holder, for a node IP or an announced load balancer address) leads to. That node's
`ip gingham-services` table is listed from its namespace, parsed into the model of
services/trace.py, and traced; endpoints are named by the pods that hold them.
"""

from __future__ import annotations

from typing import Any

from ..kernel import netns, nft
from ..kernel.links import LinkError, Netlink
from ..netpol.compile import TABLE as NETPOL_TABLE
from ..services.compile import TABLE
from ..kernel.fakenft import Table
from ..services.trace import filter_verdict, parse_listing, trace
from ..model.errors import NOT_FOUND
from .cluster import EXTERNAL_IP, Lab, LabError


def _route_to(ns: str, dst: str) -> dict[str, str | None]:
    try:
        with netns.entered(ns), Netlink() as nl:
            return nl.route_to(dst)
    except LinkError:
        return {}


def _entry_node(lab: Lab, dst: str, nodes: dict[str, Any], statuses: dict[str, Any]) -> str:
    """The node an external client's packet to `dst` reaches first (through the lab's router
    with overlay bgp: the node its route, of several with ECMP the one the kernel picks, leads to)."""
    from .topology import routers
    legs = {addr: r.name for r in routers(lab.cache().state().cluster) for addr, _ in r.legs}
    first = _route_to(lab.target_netns("external"), dst).get("gateway") or dst
    if first in legs:
        first = _route_to(netns.path_of(lab.ns(legs[first])), dst).get("gateway") or dst
    for name, node in nodes.items():
        if first == node["ip"] or first in (statuses.get(name) or {}).get("loadBalancerIPs", []):
            return name
    raise LabError(f"no node answers for {dst} on the underlay: external reaches node IPs, NodePorts "
                   "and announced load balancer addresses", NOT_FOUND)


def route_path(lab: Lab, node: str, ip: str, nodes: dict[str, Any]) -> list[str]:
    """The hops a packet to `ip` takes from `node`, each read from the kernel it is in: the
    gateway of each route, named (a node, by its address or its VXLAN gateway; a lab router)
    and followed into that namespace, until a route is on-link (delivered)."""
    import ipaddress

    from .topology import routers
    at: dict[str, tuple[str, str]] = {}  # gateway address -> (its name, the namespace to read next)
    for name, n in nodes.items():
        at[n["ip"]] = (f"node/{name}", lab.target_netns(f"node/{name}"))
        if n.get("podCIDR"):
            gw = str(ipaddress.ip_network(n["podCIDR"]).network_address)
            at[gw] = (f"node/{name} over VXLAN", lab.target_netns(f"node/{name}"))
    for r in routers(lab.cache().state().cluster):
        for addr, _ in r.legs:
            at[addr] = (r.name, netns.path_of(lab.ns(r.name)))
    hops, where = [f"node/{node}"], lab.target_netns(f"node/{node}")
    for _ in range(8):
        gw = _route_to(where, ip).get("gateway") or ""
        if not gw:
            break
        name, where = at.get(gw, (gw, ""))
        hops.append(f"{name} ({gw})" if name != gw else gw)
        if not where:
            break
    return hops


class NodeTables:
    """The nodes' nft tables, each listed from its node's kernel once (None: the node has none)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.cache: dict[tuple[str, str, str], Table | None] = {}

    def get(self, node: str, family: str, name: str) -> Table | None:
        key = (node, family, name)
        if key not in self.cache:
            listed = nft.list_table_in(self.lab.target_netns(f"node/{node}"), family, name)
            self.cache[key] = parse_listing(listed, f"{family} {name}") if listed is not None else None
        return self.cache[key]


def policy_verdict(tables: NodeTables, nodes: dict[str, Any], pods: dict[str, Any], entry: str, local: bool,
                   src: str, masq: bool, dst: str, port: int, protocol: str) -> dict[str, Any]:
    """NetworkPolicy's verdict on the way to `dst` (after DNAT): the forward (or input) chains of the
    entry node and of the destination's node, each read from its kernel. A node's own traffic
    to its pods meets neither."""
    node_of_ip = {n["ip"]: name for name, n in nodes.items()}
    dst_node = pods[dst]["node"] if dst in pods else node_of_ip.get(dst)
    hops: list[tuple[str, str, str]] = []
    if dst_node == entry:
        if not local:
            hops.append((entry, "input" if dst in node_of_ip else "forward", src))
    else:
        if not local:
            hops.append((entry, "forward", src))
        if dst_node is not None:
            seen_src = src
            if masq or local:  # the source it arrives with: what the entry node's route to it would pick
                route = _route_to(tables.lab.target_netns(f"node/{entry}"), dst)
                seen_src = route.get("prefsrc") or nodes[entry]["ip"]
            hops.append((dst_node, "input" if dst in node_of_ip else "forward", seen_src))
    steps = []
    for node, chain, s in hops:
        table = tables.get(node, "inet", NETPOL_TABLE)
        if table is None:
            continue  # no policy table on that node: nothing is isolated there
        t = filter_verdict(table, chain, s, protocol.lower(), dst, port)
        steps.append({"node": node, "chain": chain, "source": s, "verdict": t.verdict, "rules": t.matched})
    denied = next((st for st in steps if st["verdict"] != "ACCEPT"), None)
    return {"allowed": denied is None, "steps": steps}


def trace_connection(lab: Lab, source: str, dest: str, port: int, protocol: str) -> dict[str, Any]:
    dst = lab.resolve(dest, source)
    cache = lab.cache()
    nodes, statuses = cache.node_dicts(), lab.statuses(cache)
    if source.startswith("node/"):
        node, local = source.split("/", 1)[1], True
        if node not in nodes:
            raise LabError(f"no node {node!r} in lab {lab.name}", NOT_FOUND)
        src = nodes[node]["ip"]
    elif source == "external":
        node, local, src = _entry_node(lab, dst, nodes, statuses), False, EXTERNAL_IP
    else:
        pod = next((p for p in lab.pods() if f"{p['namespace']}/{p['name']}" == source and p["ip"]), None)
        if pod is None:
            raise LabError(f"no pod {source} with an address in lab {lab.name}", NOT_FOUND)
        node, local, src = pod["node"], False, pod["ip"]
    tables = NodeTables(lab)
    listed = tables.get(node, "ip", TABLE)
    table = listed if listed is not None else Table(f"ip {TABLE}")
    node_ips = {nodes[node]["ip"], *(statuses.get(node) or {}).get("loadBalancerIPs", [])}
    t = trace(table, src, protocol.lower(), dst, port, node_ips, local)
    pods = {p["ip"]: p for p in lab.pods() if p["ip"]}
    owners = {ip: f"{p['namespace']}/{p['name']}" for ip, p in pods.items()}
    owners.update({n["ip"]: f"node/{name}" for name, n in nodes.items()})
    targets = t.dnat if t.dnat else [f"{dst}:{port}"] if t.verdict == "ACCEPT" else []
    ends = []
    for e in targets:
        ip, p = e.rsplit(":", 1)
        ends.append({"address": e, "owner": owners.get(ip, ""), "path": route_path(lab, node, ip, nodes),
                     "policy": policy_verdict(tables, nodes, pods, node, local, src, t.masq, ip, int(p), protocol)})
    return {"source": source, "sourceIP": src, "node": node, "destination": dest, "address": dst, "port": port,
            "protocol": protocol.upper(), "table": listed is not None, "verdict": t.verdict,
            "dnat": bool(t.dnat), "endpoints": ends, "masquerade": t.masq, "rules": t.matched}


def describe(r: dict[str, Any]) -> str:
    head = (f"{r['source']} ({r['sourceIP']}) -> {r['address']}:{r['port']}/{r['protocol']}: a new connection "
            f"through {r['node']}'s table ip {TABLE}")
    if not r["table"]:
        return f"{head}\n  (no Services table on {r['node']}: nothing rewrites or stops this packet)"
    lines = [head + ":"]
    width = max((len(x.split(": ", 1)[0]) for x in r["rules"]), default=0)
    for x in r["rules"]:
        chain, _, rule = x.partition(": ")
        lines.append(f"  {chain.ljust(width)}  {rule}")
    if r["verdict"] == "DROP":
        lines.append("=> dropped (the client waits for its timeout)")
    elif r["verdict"] == "REJECT":
        lines.append("=> rejected (ICMP: the client fails at once)")
    elif r["dnat"]:
        eps = ", ".join(f"{e['address']} ({e['owner']})" if e["owner"] else e["address"] for e in r["endpoints"])
        n = len(r["endpoints"])
        lines.append(f"=> DNAT to {'one of ' + str(n) + ': ' if n > 1 else ''}{eps}; "
                     + ("masqueraded (the endpoint sees the node's address)" if r["masquerade"]
                        else "the client's address is kept"))
    else:
        lines.append("=> not rewritten by Services rules: delivered as addressed")
    for e in r["endpoints"]:
        pol = e["policy"]
        who = f"{e['address']} ({e['owner']})" if e["owner"] else e["address"]
        if len(e.get("path", [])) > 1:
            lines.append(f"route to {who}: {' -> '.join(e['path'])}")
        if not pol["steps"]:
            lines.append(f"NetworkPolicy, {who}: allowed (no policy table on the way)")
            continue
        lines.append(f"NetworkPolicy, {who}: {'allowed' if pol['allowed'] else 'DENIED'}")
        for st in pol["steps"]:
            lines.append(f"  {st['node']} {st['chain']} (from {st['source']}): {st['verdict'].lower()}")
            lines += [f"    {x}" for x in st["rules"]]
    return "\n".join(lines)
