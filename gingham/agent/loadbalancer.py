"""MetalLB's L2 mode in the agent: which live node answers ARP for each LoadBalancer address.

`elect` is pure: per address, the live node with the lowest hash of (address, node) among
the candidates (with externalTrafficPolicy Local, only nodes with a ready local endpoint
stand). Every node computes the same answer from the same leases, with no coordination.
`announce` puts the elected addresses on the uplink and sends a gratuitous ARP.
"""

from __future__ import annotations

import hashlib
import ipaddress
import sys
from typing import Iterable, Mapping

from ..kernel import arp
from ..kernel.links import Netlink
from ..model.services import Endpoint, Service


def elect(services: Iterable[Service], eps: Mapping[str, list[Endpoint]], alive: list[str], node: str) -> set[str]:
    """The LoadBalancer addresses `node` should announce."""
    mine = set()
    for svc in services:
        ip = svc.load_balancer_ip if svc.type == "LoadBalancer" else ""
        candidates = sorted(alive)
        if svc.external_policy_local:
            local = {e.node for e in eps.get(svc.key, []) if e.ready}
            candidates = [n for n in candidates if n in local]
        if ip and candidates:
            if min(candidates, key=lambda n: hashlib.sha256(f"{ip}/{n}".encode()).hexdigest()) == node:
                mine.add(ip)
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
