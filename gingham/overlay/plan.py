"""Pure: the other nodes' subnets -> what this node's kernel needs, Flannel-style.

VXLAN: one VTEP per node (`gingham.1`, VNI 1, UDP 8472, learning off) and, per remote
node, a permanent neighbour (remote subnet .0 -> remote VTEP MAC), an FDB entry
(remote VTEP MAC -> remote node IP) and a route (remote subnet via .0 onlink).
host-gw: one route per remote node via its node IP.
bgp: nothing here; BIRD learns the routes from the other nodes (gingham/bgp/bird.py) and the
pods keep the uplink's MTU.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

VXLAN_DEV = "gingham.1"
VXLAN_VNI = 1
VXLAN_PORT = 8472
VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14


@dataclass(frozen=True)
class Route:
    dst: str
    via: str
    dev: str
    onlink: bool = False


@dataclass
class OverlayPlan:
    mode: str
    pod_mtu: int
    vtep: dict[str, Any] | None = None  # name, vni, port, local, mac, address, mtu
    neighbours: list[tuple[str, str]] = field(default_factory=list)  # (ip, mac) on the VTEP
    fdb: list[tuple[str, str]] = field(default_factory=list)  # (mac, remote node ip)
    routes: list[Route] = field(default_factory=list)


def compile_overlay(mode: str, me: str, nodes: dict[str, dict[str, Any]], uplink: str = "eth0",
                    uplink_mtu: int = 1500) -> OverlayPlan:
    """`nodes`: name -> {"ip", "podCIDR", "vtepMAC"}; the plan for node `me`."""
    mine = nodes[me]
    remote = sorted((n, v) for n, v in nodes.items() if n != me)
    if mode == "bgp":
        return OverlayPlan(mode, uplink_mtu)
    if mode == "host-gw":
        return OverlayPlan(mode, uplink_mtu, routes=[Route(v["podCIDR"], v["ip"], uplink) for _, v in remote])
    if mode != "vxlan":
        raise ValueError(f"unknown overlay {mode!r}")
    mtu = uplink_mtu - VXLAN_OVERHEAD
    net = ipaddress.ip_network(mine["podCIDR"])
    plan = OverlayPlan(mode, mtu, vtep={"name": VXLAN_DEV, "vni": VXLAN_VNI, "port": VXLAN_PORT, "local": mine["ip"],
                                        "mac": mine["vtepMAC"], "address": f"{net.network_address}/32", "mtu": mtu,
                                        "uplink": uplink})
    for _, v in remote:
        gw = str(ipaddress.ip_network(v["podCIDR"]).network_address)
        plan.neighbours.append((gw, v["vtepMAC"]))
        plan.fdb.append((v["vtepMAC"], v["ip"]))
        plan.routes.append(Route(v["podCIDR"], gw, VXLAN_DEV, onlink=True))
    return plan
