"""The overlay plan by value: what a node's kernel needs to reach the other nodes' pods."""

from __future__ import annotations

import pytest

from gingham.overlay.plan import VXLAN_DEV, Route, compile_overlay

NODES = {
    "node-1": {"ip": "192.168.200.11", "podCIDR": "10.244.0.0/24", "vtepMAC": "0a:00:00:00:00:01"},
    "node-2": {"ip": "192.168.200.12", "podCIDR": "10.244.1.0/24", "vtepMAC": "0a:00:00:00:00:02"},
    "node-3": {"ip": "192.168.200.13", "podCIDR": "10.244.2.0/24", "vtepMAC": "0a:00:00:00:00:03"},
}


def test_host_gw_is_a_route_per_other_node_via_its_address():
    plan = compile_overlay("host-gw", "node-2", NODES, "eth0", 1500)
    assert plan.pod_mtu == 1500 and plan.vtep is None and not plan.fdb and not plan.neighbours
    assert plan.routes == [Route("10.244.0.0/24", "192.168.200.11", "eth0"),
                           Route("10.244.2.0/24", "192.168.200.13", "eth0")]


def test_vxlan_is_flannels_vtep_with_a_neighbour_fdb_entry_and_route_per_other_node():
    plan = compile_overlay("vxlan", "node-1", NODES, "eth0", 1500)
    assert plan.pod_mtu == 1450  # outer IPv4, UDP, VXLAN and inner Ethernet headers: 50 bytes
    assert plan.vtep == {"name": VXLAN_DEV, "vni": 1, "port": 8472, "local": "192.168.200.11",
                         "mac": "0a:00:00:00:00:01", "address": "10.244.0.0/32", "mtu": 1450, "uplink": "eth0"}
    assert plan.neighbours == [("10.244.1.0", "0a:00:00:00:00:02"), ("10.244.2.0", "0a:00:00:00:00:03")]
    assert plan.fdb == [("0a:00:00:00:00:02", "192.168.200.12"), ("0a:00:00:00:00:03", "192.168.200.13")]
    assert plan.routes == [Route("10.244.1.0/24", "10.244.1.0", VXLAN_DEV, onlink=True),
                           Route("10.244.2.0/24", "10.244.2.0", VXLAN_DEV, onlink=True)]


def test_a_lone_node_needs_nothing_and_a_jumbo_uplink_raises_the_pod_mtu():
    alone = compile_overlay("vxlan", "node-1", {"node-1": NODES["node-1"]})
    assert not alone.routes and not alone.fdb and alone.vtep is not None
    assert compile_overlay("vxlan", "node-1", NODES, "eth0", 9000).pod_mtu == 8950


def test_an_unknown_overlay_is_refused_and_bgp_leaves_the_routes_to_bird():
    with pytest.raises(ValueError, match="unknown overlay 'ipip'"):
        compile_overlay("ipip", "node-1", NODES)
    bgp = compile_overlay("bgp", "node-1", NODES, "eth0", 1500)
    assert (bgp.routes, bgp.vtep, bgp.fdb, bgp.pod_mtu) == ([], None, [], 1500)
