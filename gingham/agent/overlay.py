"""Flannel's part of the agent: the node's overlay (VXLAN or host-gw), masquerade, CNI config.

The plan is pure (overlay/plan.py, from the nodes that hold a lease); this applies it with
netlink, changing only differences, so a restarted agent adopts what is there.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

from ..cni.runtime import Network
from ..kernel import nft, sysctl
from ..kernel.links import Netlink
from ..kernel.nftables import BaseChain, Transaction, quote
from ..model.objects import Cluster
from ..overlay.plan import OverlayPlan, compile_overlay

NODE_TABLE = "gingham-node"
BRIDGE = "cni0"
UPLINK = "eth0"


def conflist(pod_cidr: str, mtu: int, data_dir: str) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "gingham", "plugins": [
        {"type": "gingham-bridge", "bridge": BRIDGE, "isGateway": True, "hairpinMode": True, "mtu": mtu,
         "ipam": {"type": "gingham-host-local", "dataDir": data_dir, "ranges": [[{"subnet": pod_cidr}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "gingham-portmap", "capabilities": {"portMappings": True}, "snat": True},
        {"type": "gingham-loopback"}]}


def node_nat(pod_cidr: str) -> Transaction:
    """Pods keep their address inside the pod network; leaving it, they take the node's."""
    postrouting = BaseChain("postrouting", "nat", "postrouting", "srcnat")
    return (Transaction("ip", NODE_TABLE).add_table().add_chain("postrouting", postrouting).flush_chain("postrouting")
            .add_rule("postrouting", f"ip saddr {pod_cidr} ip daddr != {pod_cidr} oifname != {quote(BRIDGE)} masquerade"))


def uplink_network() -> str:
    """The network of the node's uplink address (its segment of the underlay)."""
    with Netlink() as nl:
        link = nl.require(UPLINK)
        return next((str(a.network) for a in nl.addresses(link.index) if a.network.prefixlen < 32), "")


def program_node(cluster: Cluster, node: str, alive: dict[str, dict[str, Any]], state_dir: str) -> tuple[OverlayPlan, Network]:
    """The overlay towards the live nodes, the route to ClusterIPs, masquerade and the node's
    CNI config; the plan applied and the network pods are attached to."""
    me = alive[node]
    with Netlink() as nl:
        mtu = nl.require(UPLINK).mtu
    plan = compile_overlay(cluster.overlay, node, alive, UPLINK, mtu)
    apply_overlay(plan, cluster.pod_cidr, me["podCIDR"])
    with Netlink() as nl:  # a real node reaches ClusterIPs through its default route; a lab node has none
        nl.add_route(cluster.service_cidr, nl.require(UPLINK).index, scope=253, replace=True)
    nft.run(node_nat(cluster.pod_cidr))
    # a node forwards Service traffic (NodePort, LoadBalancer) to pods on other nodes even before
    # a pod of its own made the bridge plugin turn forwarding on
    sysctl.write("net.ipv4.ip_forward", 1)
    conf_path = os.path.join(state_dir, "cni.conflist")
    raw = json.dumps(conflist(me["podCIDR"], plan.pod_mtu, os.path.join(state_dir, "ipam")), indent=1)
    if not os.path.exists(conf_path) or open(conf_path).read() != raw:
        with open(conf_path, "w") as f:
            f.write(raw)
    return plan, Network.parse(raw.encode(), conf_path)


def apply_overlay(plan: OverlayPlan, cluster_cidr: str, own_cidr: str) -> None:
    cluster = ipaddress.IPv4Network(cluster_cidr)  # the lab is IPv4 (README)
    with Netlink() as nl:
        uplink = nl.require(UPLINK)
        dev_index = uplink.index
        if plan.vtep:
            v = plan.vtep
            vt = nl.ensure_vxlan(v["name"], v["vni"], v["local"], v["port"], uplink.index, v["mac"], v["mtu"])
            dev_index = vt.index
            nl.add_address(vt.index, ipaddress.ip_interface(v["address"]))
            for ip, mac in plan.neighbours:
                nl.neigh_replace(vt.index, ip, mac)
            want = set(plan.fdb)
            have = nl.fdb_entries(vt.index)
            for mac, dst in want - have:
                nl.fdb_add(vt.index, mac, dst)
            for mac, dst in have - want:
                nl.fdb_del(vt.index, mac, dst)
        if plan.mode == "bgp":
            return  # the routes to the other nodes' pods are BIRD's
        wanted = {r.dst for r in plan.routes}
        for r in plan.routes:
            idx = dev_index if r.dev != UPLINK else uplink.index
            nl.add_route(r.dst, idx, gw=r.via, onlink=r.onlink, replace=True)
        for have_r in nl.routes():
            dst = have_r["dst"]
            net = ipaddress.ip_network(dst, strict=False)
            if isinstance(net, ipaddress.IPv4Network) and net.subnet_of(cluster) and net != cluster \
                    and dst not in wanted and dst != own_cidr and have_r.get("gw"):
                nl.del_route(dst, have_r["oif"], have_r["gw"])
