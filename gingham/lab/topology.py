"""Where the lab puts things on its underlay, as pure functions of the Cluster.

One segment, 192.168.200.0/24 (bridge `ul0`), holds etcd, the external client, Prometheus and
the nodes (.11, .12...). With `spec.racks`, rack i is a segment of its own, 192.168.(200+i).0/24
on bridge `ul<i>` (rack 0 shares the first with etcd and the rest), its nodes at .11 on, and
a router namespace joins the segments at .1 of each; every host routes the other segments
through its own segment's .1. Without racks, each external BGP peer (`spec.bgp.peers`) is a
router namespace at its own address; with racks, the peers are the joining router's .1
addresses.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..model.objects import Cluster

UNDERLAY = ipaddress.IPv4Network("192.168.200.0/24")


@dataclass(frozen=True)
class Router:
    name: str                       # its namespace: gl-<lab>-<name>
    legs: tuple[tuple[str, int], ...]  # (address, segment index)
    as_number: int = 0              # 0: it forwards, and runs no BGP


def segments(cluster: Cluster) -> list[ipaddress.IPv4Network]:
    if len(cluster.racks) < 2:
        return [UNDERLAY]
    return [ipaddress.IPv4Network(f"192.168.{200 + i}.0/24") for i in range(len(cluster.racks))]


def gateway(segment: ipaddress.IPv4Network) -> str:
    return str(segment.network_address + 1)


def node_ips(cluster: Cluster) -> dict[str, str]:
    segs = segments(cluster)
    if len(segs) == 1:
        return {n: str(UNDERLAY.network_address + 11 + i) for i, n in enumerate(cluster.nodes)}
    return {n: str(segs[r].network_address + 11 + j) for r, (_, ns) in enumerate(cluster.racks) for j, n in enumerate(ns)}


def routers(cluster: Cluster) -> list[Router]:
    """The router namespaces the lab makes."""
    peers = list(cluster.bgp.peers) if cluster.overlay == "bgp" and cluster.bgp is not None else []
    segs = segments(cluster)
    if len(segs) > 1:
        asn = peers[0].as_number if peers else 0
        return [Router("router", tuple((gateway(s), i) for i, s in enumerate(segs)), asn)]
    return [Router("router" if i == 0 else f"router-{i}", ((p.address, 0),), p.as_number) for i, p in enumerate(peers)]


def problems(cluster: Cluster, taken: set[str]) -> list[str]:
    """What the lab cannot build of the Cluster's peers, said before it builds anything."""
    peers = list(cluster.bgp.peers) if cluster.overlay == "bgp" and cluster.bgp is not None else []
    segs = segments(cluster)
    if len(segs) > 1:
        legs = {gateway(s) for s in segs}
        bad = [p.address for p in peers if p.address not in legs]
        if bad or len({p.as_number for p in peers}) > 1:
            return [f"spec.bgp.peers: with racks the lab's peer is the router joining them, at "
                    f"{', '.join(sorted(legs, key=ipaddress.IPv4Address))} (one AS); not {', '.join(bad) or 'two ASes'}"]
        return []
    return [f"spec.bgp.peers: the lab makes a router at {p.address} only on the underlay {UNDERLAY} at an address "
            "nothing else has (.2-.10 are etcd's and monitoring's, .11 on the nodes', .100 external's)"
            for p in peers if ipaddress.IPv4Address(p.address) not in UNDERLAY or p.address in taken]
