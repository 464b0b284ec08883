"""BGP by value: BIRD's configurations (golden files, and BIRD's own parser as the judge), the
addresses each node announces, and birdc's output read back."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from gingham.agent.loadbalancer import bgp_addresses
from gingham.bgp.bird import node_config, router_config
from gingham.lab.bgp import parse_protocols, parse_routes
from gingham.model.objects import BgpPeer, BgpSpec, Cluster
from gingham.model.services import Endpoint, Service, ServicePort

from ..helpers import golden

NODES = {f"node-{i}": {"ip": f"192.168.200.{10 + i}", "podCIDR": f"10.244.{i - 1}.0/24"} for i in (1, 2, 3)}
MESH = Cluster(nodes=tuple(NODES), overlay="bgp", bgp=BgpSpec(64512, (), (BgpPeer("192.168.200.1", 64500),)))
REFLECTED = Cluster(nodes=tuple(NODES), overlay="bgp", bgp=BgpSpec(65001, ("node-1",)))
RACKED = Cluster(nodes=tuple(NODES), overlay="bgp", racks=(("a", ("node-1", "node-2")), ("b", ("node-3",))),
                 bgp=BgpSpec(64512, (), (BgpPeer("192.168.200.1", 64500), BgpPeer("192.168.201.1", 64500))))
RACK_NODES = {**NODES, "node-3": {"ip": "192.168.201.11", "podCIDR": "10.244.2.0/24"}}
CONFIGS = {"bird-mesh-node-1.conf": node_config(MESH, "node-1", NODES, ["198.51.100.2", "198.51.100.1"],
                                                "192.168.200.0/24"),
           "bird-reflector-node-1.conf": node_config(REFLECTED, "node-1", NODES),
           "bird-reflected-node-2.conf": node_config(REFLECTED, "node-2", NODES),
           "bird-rack-b-node-3.conf": node_config(RACKED, "node-3", RACK_NODES, [], "192.168.201.0/24"),
           "bird-router.conf": router_config(["192.168.200.1"], 64500, MESH, NODES),
           "bird-rack-router.conf": router_config(["192.168.200.1", "192.168.201.1"], 64500, RACKED, RACK_NODES)}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bird_configurations_are_what_they_were_and_bird_reads_them(name, tmp_path):
    golden.check(name, CONFIGS[name])
    if shutil.which("bird"):
        path = tmp_path / name
        path.write_text(CONFIGS[name])
        r = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr, r.stderr


def test_a_mesh_peers_with_every_other_node_and_reflectors_take_the_rest():
    def neighbours(text: str) -> list[str]:
        return [line.split()[1] for line in text.splitlines() if line.strip().startswith("neighbor ")]
    assert neighbours(CONFIGS["bird-mesh-node-1.conf"]) == ["192.168.200.12", "192.168.200.13", "192.168.200.1"]
    assert neighbours(CONFIGS["bird-reflector-node-1.conf"]) == ["192.168.200.12", "192.168.200.13"]
    assert neighbours(CONFIGS["bird-reflected-node-2.conf"]) == ["192.168.200.11"]  # its reflector only
    assert "rr client;" in CONFIGS["bird-reflector-node-1.conf"]
    assert "rr client;" not in CONFIGS["bird-reflected-node-2.conf"]
    # a rack of its own: no mesh, and of the peers only its rack's router, directly connected
    assert neighbours(CONFIGS["bird-rack-b-node-3.conf"]) == ["192.168.201.1"]
    assert "  direct;" in CONFIGS["bird-rack-b-node-3.conf"] and "multihop" not in CONFIGS["bird-rack-b-node-3.conf"]


def svc(name: str, local: bool = False, ips: tuple[str, ...] = ()) -> Service:
    return Service("d", name, "LoadBalancer", "10.96.0.20", (ServicePort("", "TCP", 80, 80, 30080),), {"a": "b"},
                   external_ips=ips, external_policy_local=local, health_check_node_port=31000 if local else 0,
                   load_balancer_ip=f"198.51.100.{len(name)}")


def test_every_node_that_can_serve_an_address_announces_it():
    services = [svc("all", ips=("203.0.113.7",)), svc("local", local=True)]
    eps = {"d/local": [Endpoint("10.244.1.2", "node-2", "d/p", ready=True),
                       Endpoint("10.244.2.2", "node-3", "d/q", ready=False)]}
    alive = ["node-1", "node-2", "node-3"]
    got = {n: bgp_addresses(services, eps, alive, n) for n in alive}
    assert got == {"node-1": {"198.51.100.3", "203.0.113.7"}, "node-2": {"198.51.100.3", "203.0.113.7", "198.51.100.5"},
                   "node-3": {"198.51.100.3", "203.0.113.7"}}
    assert bgp_addresses(services, eps, ["node-2", "node-3"], "node-1") == set()  # a node not alive announces nothing


PROTOCOLS = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     05:28:14.883

kernel1    Kernel     master4    up     05:28:14.883
  Channel ipv4
    Routes:         0 imported, 4 exported, 0 preferred

node_1     BGP        ---        up     05:28:15.671  Established
  BGP state:          Established
    Neighbor address: 192.168.200.11
    Neighbor AS:      64512
  Channel ipv4
    Routes:         2 imported, 0 exported, 2 preferred

node_2     BGP        ---        start  05:28:19.002  Idle          Error: BFD session down
  BGP state:          Idle
    Neighbor address: 192.168.200.12
    Neighbor AS:      64512
"""
ROUTES = """BIRD 2.0.12 ready.
Table master4:
10.244.0.0/24        unicast [node_1 05:28:15.690] * (100) [AS64512i]
\tvia 192.168.200.11 on eth0
10.244.1.0/24        blackhole [pods 05:28:14.883] * (200)
198.51.100.1/32      unicast [node_1 05:28:15.690] * (100) [AS64512i]
\tvia 192.168.200.11 on eth0
                     unicast [node_3 05:28:15.791] (100) [AS64512i]
\tvia 192.168.200.13 on eth0
"""


def test_birdc_output_reads_back_as_sessions_and_routes():
    assert parse_protocols(PROTOCOLS) == [
        {"name": "node_1", "state": "Established", "since": "05:28:15.671", "imported": 2, "exported": 0,
         "neighbor": "192.168.200.11", "as": 64512},
        {"name": "node_2", "state": "Idle", "since": "05:28:19.002", "imported": 0, "exported": 0,
         "neighbor": "192.168.200.12", "as": 64512}]
    assert parse_routes(ROUTES) == [
        {"prefix": "10.244.0.0/24", "kind": "unicast", "from": "node_1", "best": True, "via": ["192.168.200.11"]},
        {"prefix": "10.244.1.0/24", "kind": "blackhole", "from": "pods", "best": True, "via": []},
        {"prefix": "198.51.100.1/32", "kind": "unicast", "from": "node_1", "best": True, "via": ["192.168.200.11"]},
        {"prefix": "198.51.100.1/32", "kind": "unicast", "from": "node_3", "best": False, "via": ["192.168.200.13"]}]
