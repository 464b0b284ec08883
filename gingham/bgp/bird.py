"""BIRD 2 configurations as pure functions of the cluster: a node's, and the lab's router's.

A node (Calico's BGP mode, in BIRD as Calico runs it) announces its pod CIDR (a static
blackhole route, so the CIDR is announced whatever pods it has) to the other nodes over
iBGP, in a full mesh or through route reflectors (`spec.bgp.routeReflectors`: those nodes
peer with every node and reflect, with the cluster id Calico's `routeReflectorClusterID`
would hold; the others peer only with them). Routes learned from the other nodes go into
the kernel's main table with the announcing node as the next hop (`gateway direct`: the
nodes share the underlay), so pod packets are routed natively: no encapsulation, no NAT.
To each external peer (`spec.bgp.peers`, eBGP) a node also announces the LoadBalancer and
external addresses it serves (MetalLB's BGP mode): a router then spreads connections over
every node that announces an address (ECMP).

Sessions use a 9 s hold time (3 s keepalives), connect a second after BIRD starts, retry a
connection every 2 s and come back 2 s after a failure, doubling to 16 s if it repeats
(BIRD's defaults, 5 s, 120 s and 60 s to 300 s, suit routers that stay up, not a network
being built or a lab cutting links). BFD (100 ms x 3) notices a peer gone in 0.3 s, and
graceful restart (`bfd graceful`: a BFD failure too) keeps its routes 6 s more: a BIRD that
dies and is started again within that (the agent's watchdog checks every second) loses no
route, and a node that goes away is withdrawn 6 to 7 s after, within the hold time. The
agent restarting does not touch BIRD at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ..model.objects import BgpSpec, Cluster

HOLD, KEEPALIVE = 9, 3
RESTART = 6  # seconds a peer keeps a speaker's routes after its session drops
BFD = "min rx interval 100 ms; min tx interval 100 ms; multiplier 3;"


def protocol_name(what: str) -> str:
    """A protocol name BIRD accepts (a letter, then letters, digits, underscores): a node's
    name, a peer's address."""
    name = "".join(c if c.isalnum() else "_" for c in what)
    return name if name[:1].isalpha() else "peer_" + name


def _session(local_ip: str, local_as: int, direct: bool = True) -> str:
    hops = "direct" if direct else "multihop"
    return (f"  local {local_ip} as {local_as};\n  {hops};\n  hold time {HOLD};\n  keepalive time {KEEPALIVE};\n"
            "  connect delay time 1;\n  connect retry time 2;\n  error wait time 2, 16;\n  graceful restart on;\n"
            f"  graceful restart time {RESTART};\n  bfd graceful;\n")


def _common(router_id: str, what: str) -> list[str]:
    return [f"# BIRD 2 configuration for {what}, written by gingham (gingham/bgp/bird.py): do not edit.",
            f"router id {router_id};",
            "log stderr { info, remote, warning, error, auth, fatal, bug };",
            "",
            "protocol device {\n  scan time 10;\n}",
            "",
            f'protocol bfd {{\n  interface "*" {{\n    {BFD}\n  }};\n}}',
            ""]


def node_config(cluster: Cluster, node: str, nodes: dict[str, dict[str, str]], addresses: Iterable[str] = (),
                segment: str = "") -> str:
    """`nodes`: every node of the cluster, name -> {"ip", "podCIDR"}; `addresses`: the
    LoadBalancer and external addresses this node announces to the external peers; `segment`:
    the network of the node's uplink. The iBGP mesh is the node's rack (with racks, each is an
    L3 segment of its own); the external peers are those on its segment (directly connected),
    or all of them (multihop) when none is. From a peer the node takes other nodes' pod CIDRs
    (with racks: the other racks', through their router; they carry the nodes' own AS, which
    `allow local as 1` lets in, and a node's mesh routes, with a shorter path, still win)."""
    spec = cluster.bgp or BgpSpec()
    me = nodes[node]
    net = ipaddress.ip_network(cluster.pod_cidr)
    rack = [n for n in sorted(nodes) if cluster.rack_of(n) == cluster.rack_of(node)]
    rrs = [n for n in spec.route_reflectors if n in rack]
    if not rrs:
        neighbours, client = [n for n in rack if n != node], False
    elif node in rrs:
        neighbours, client = [n for n in rack if n != node], True
    else:
        neighbours, client = [n for n in rrs if n != node], False
    on_segment = [p for p in spec.peers if segment and ipaddress.IPv4Address(p.address) in ipaddress.ip_network(segment)]
    peers = on_segment or list(spec.peers)
    out = _common(me["ip"], f"node {node}")
    out += ["protocol kernel {",
            "  ipv4 {\n    import none;\n    export where source = RTS_BGP;  # the other nodes' pod CIDRs\n  };",
            "  merge paths on;",
            "}",
            "",
            "protocol static pods {\n  ipv4;",
            f"  route {me['podCIDR']} blackhole;",
            "}",
            "",
            "protocol static addresses {  # LoadBalancer and external addresses served here\n  ipv4;"]
    out += [f"  route {ip}/32 blackhole;" for ip in sorted(set(addresses), key=ipaddress.IPv4Address)]
    out += ["}",
            "",
            "filter from_nodes {  # another node's pod CIDR, nothing else",
            f"  if net ~ [ {net}{{{cluster.node_cidr_mask},{cluster.node_cidr_mask}}} ] && net != {me['podCIDR']}"
            " then accept;",
            "  reject;",
            "}",
            "",
            "template bgp nodes {",
            _session(me["ip"], spec.as_number).rstrip("\n"),
            "  ipv4 {\n    import filter from_nodes;\n    export where proto = \"pods\" || source = RTS_BGP;\n"
            "    gateway direct;\n  };",
            "}"]
    if client:
        rr_id = str(ipaddress.IPv4Address(me["ip"]))
        out += ["", "template bgp clients from nodes {", "  rr client;", f"  rr cluster id {rr_id};", "}"]
    for n in neighbours:
        tpl = "clients" if client and n not in rrs else "nodes"
        out += ["", f"protocol bgp {protocol_name(n)} from {tpl} {{",
                f"  neighbor {nodes[n]['ip']} as {spec.as_number};", "}"]
    for peer in peers:
        out += ["", f"protocol bgp {protocol_name(peer.address)} {{",
                _session(me["ip"], spec.as_number, peer in on_segment).rstrip("\n"),
                "  allow local as 1;  # other racks' pod CIDRs come back through the router with our AS in the path",
                "  ipv4 {\n    import filter from_nodes;\n"
                "    export where proto = \"pods\" || proto = \"addresses\";\n    next hop self;\n  };",
                f"  neighbor {peer.address} as {peer.as_number};",
                "}"]
    return "\n".join(out) + "\n"


def router_config(addresses: list[str], as_number: int, cluster: Cluster, nodes: dict[str, dict[str, str]]) -> str:
    """The lab's router (`addresses`: one per segment it joins, the first its id): eBGP with
    every node, whatever they announce into its kernel, equal routes (an address several nodes
    announce) merged into one multipath route; it passes the pod CIDRs on to every node (with
    racks, that is how a rack learns the others'; a node ignores its own AS coming back)."""
    spec = cluster.bgp or BgpSpec()
    net = ipaddress.ip_network(cluster.pod_cidr)
    out = _common(addresses[0], "the lab's router")
    out += ["protocol kernel {",
            "  ipv4 {\n    import none;\n    export all;\n  };",
            "  merge paths on;  # ECMP: one route, a next hop per node announcing it",
            "}",
            "",
            "template bgp nodes {",
            _session("", as_number).replace("  local  as", "  local as").rstrip("\n"),
            "  ipv4 {\n    import all;\n"
            f"    export where net ~ [ {net}{{{cluster.node_cidr_mask},{cluster.node_cidr_mask}}} ];\n  }};",
            "}"]
    for n in sorted(nodes):
        out += ["", f"protocol bgp {protocol_name(n)} from nodes {{",
                f"  neighbor {nodes[n]['ip']} as {spec.as_number};", "}"]
    return "\n".join(out) + "\n"
