"""MetalLB's L2 and BGP modes in the agent: which live nodes announce each LoadBalancer address.

`elect` is pure: per address, the live node with the lowest hash of (address, node) among
the candidates (with externalTrafficPolicy Local, only nodes with a ready local endpoint
stand). Every node computes the same answer from the same leases, with no coordination.
`announce` puts the elected addresses on the uplink and sends a gratuitous ARP. With
overlay bgp, `bgp_addresses` instead: every candidate node announces (BIRD does it).
"""

from __future__ import annotations

import hashlib
import ipaddress
import sys
from typing import Iterable, Mapping

from ..kernel import arp
from ..kernel.links import Netlink
from ..model.services import Endpoint, Service


def candidates(svc: Service, eps: Mapping[str, list[Endpoint]], alive: list[str]) -> list[str]:
    """The live nodes that can take a Service's external traffic: all of them, or with
    externalTrafficPolicy Local those with a ready endpoint of their own."""
    if not svc.external_policy_local:
        return sorted(alive)
    local = {e.node for e in eps.get(svc.key, []) if e.ready}
    return [n for n in sorted(alive) if n in local]


def elect(services: Iterable[Service], eps: Mapping[str, list[Endpoint]], alive: list[str], node: str) -> set[str]:
    """The LoadBalancer addresses `node` should announce (L2: one node per address)."""
    mine = set()
    for svc in services:
        ip = svc.load_balancer_ip if svc.type == "LoadBalancer" else ""
        can = candidates(svc, eps, alive) if ip else []
        if can and min(can, key=lambda n: hashlib.sha256(f"{ip}/{n}".encode()).hexdigest()) == node:
            mine.add(ip)
    return mine


def bgp_addresses(services: Iterable[Service], eps: Mapping[str, list[Endpoint]], alive: list[str],
                  node: str) -> set[str]:
    """The addresses `node` announces over BGP (MetalLB's BGP mode): every LoadBalancer address
    and external IP of the Services it is a candidate for, so that a router spreads their
    connections over all those nodes."""
    mine: set[str] = set()
    for svc in services:
        ips = ([svc.load_balancer_ip] if svc.type == "LoadBalancer" and svc.load_balancer_ip else []) + \
            list(svc.external_ips)
        if ips and node in candidates(svc, eps, alive):
            mine.update(ips)
    return mine


def announce(uplink: str, mine: set[str]) -> None:
    """Exactly `mine` as /32 addresses on the uplink; each new one announced by gratuitous ARP."""
    with Netlink() as nl:
        link = nl.require(uplink)
        have = {str(a.ip) for a in nl.addresses(link.index) if a.network.prefixlen == 32}
        for ip in mine - have:
            nl.add_address(link.index, ipaddress.ip_interface(f"{ip}/32"))
            try:
                arp.announce(uplink, link.mac, ip)
            except OSError as e:
                print(f"gratuitous ARP for {ip}: {e}", file=sys.stderr)
        for ip in have - mine:
            nl.del_address(link.index, ipaddress.ip_interface(f"{ip}/32"))
