"""The Services compiler by value, and its ruleset diff.

Address plan: pods 10.244.0.0/16, ClusterIPs 10.96.0.0/16, this node node-1 at
192.168.200.11, endpoints 10.244.x.y.
"""

from __future__ import annotations

import pytest

from gingham.model.services import Endpoint, ServiceError, parse_service
from gingham.kernel.nftables import diff, full
from gingham.services.compile import NodeContext, compile_services

CTX = NodeContext("node-1", "192.168.200.11", "10.244.0.0/16", "10.96.0.0/16")


def svc(name="web", **spec):
    spec.setdefault("ports", [{"port": 80, "targetPort": 8080}])
    spec.setdefault("clusterIP", "10.96.0.20")
    spec.setdefault("selector", {"app": name})
    return parse_service("default", name, {"spec": spec}, "10.96.0.0/16")


def ep(ip, node="node-2", port=8080, proto="TCP", name="", ready=True):
    return Endpoint(ip, node, f"default/{ip}", ready, True, False, ((name, proto, port),))


def test_cluster_ip_dispatches_to_every_endpoint():
    rs = compile_services(CTX, [svc()], {"default/web": [ep("10.244.1.2"), ep("10.244.2.2"), ep("10.244.3.2")]})
    assert rs.elements["service-ips"]["10.96.0.20 . tcp . 80"] == "goto balance-tcp-3"
    # one shared chain per endpoint count; the Service itself is the elements of the map
    assert rs.chains["balance-tcp-3"] == ["dnat ip to ip daddr . tcp dport . numgen random mod 3 map @tcp-endpoints"]
    assert rs.elements["tcp-endpoints"] == {"10.96.0.20 . 80 . 0": "10.244.1.2 . 8080",
                                            "10.96.0.20 . 80 . 1": "10.244.2.2 . 8080",
                                            "10.96.0.20 . 80 . 2": "10.244.3.2 . 8080"}
    assert set(rs.elements["hairpin"]) == {"10.244.1.2 . 10.244.1.2", "10.244.2.2 . 10.244.2.2",
                                           "10.244.3.2 . 10.244.3.2"}
    assert "10.96.0.20" in rs.elements["cluster-ips"]
    assert rs.chains["services"][0] == "ip saddr != 10.244.0.0/16 ip daddr @cluster-ips jump mark-for-masquerade"


def test_no_endpoints_rejects_and_makes_no_chain():
    rs = compile_services(CTX, [svc(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])], {})
    assert rs.elements["no-endpoint-services"] == {"10.96.0.20 . tcp . 80": "goto reject-chain"}
    assert rs.elements["no-endpoint-nodeports"] == {"tcp . 30080": "goto reject-chain"}
    assert not [c for c in rs.chains if c.startswith(("service-", "endpoint-")) and "/" in c]


def test_not_ready_endpoints_are_skipped_and_terminating_are_a_fallback():
    rs = compile_services(CTX, [svc()], {"default/web": [ep("10.244.1.2", ready=False)]})
    assert "10.96.0.20 . tcp . 80" in rs.elements["no-endpoint-services"]
    ending = Endpoint("10.244.2.2", "node-2", "default/ending", False, True, True, (("", "TCP", 8080),))
    gone = Endpoint("10.244.3.2", "node-2", "default/gone", False, False, True, (("", "TCP", 8080),))
    rs = compile_services(CTX, [svc()], {"default/web": [ep("10.244.1.2", ready=False), ending, gone]})
    # no ready endpoint: the serving one that is terminating takes the traffic (kube-proxy's fallback)
    assert rs.elements["service-ips"]["10.96.0.20 . tcp . 80"] == "goto balance-tcp-1"
    assert rs.elements["tcp-endpoints"] == {"10.96.0.20 . 80 . 0": "10.244.2.2 . 8080"}
    rs = compile_services(CTX, [svc()], {"default/web": [ep("10.244.1.9"), ending]})
    assert rs.elements["tcp-endpoints"] == {"10.96.0.20 . 80 . 0": "10.244.1.9 . 8080"}  # a ready one wins


def test_session_affinity_uses_a_timed_set_per_endpoint():
    s = svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    rs = compile_services(CTX, [s], {"default/web": [ep("10.244.1.2")]})
    (aff,) = [n for n in rs.sets if n.startswith("affinity-")]
    assert rs.sets[aff] == "type ipv4_addr; flags dynamic,timeout; timeout 60s"
    (epc,) = [n for n in rs.chains if n.startswith("endpoint-")]
    assert rs.chains[epc][0] == f"update @{aff} {{ ip saddr }}"
    chain = rs.elements["service-ips"]["10.96.0.20 . tcp . 80"].removeprefix("goto ")
    assert rs.chains[chain][0] == f"ip saddr @{aff} goto {epc}"  # a known client goes back where it went


def test_traffic_policies_local():
    s = svc(type="LoadBalancer", externalTrafficPolicy="Local", internalTrafficPolicy="Local",
            ports=[{"port": 80, "nodePort": 30080}])
    remote_only = compile_services(CTX, [s], {"default/web": [ep("10.244.1.2")]})
    assert remote_only.elements["no-endpoint-services"]["10.96.0.20 . tcp . 80"] == "drop"
    assert remote_only.elements["no-endpoint-nodeports"]["tcp . 30080"] == "drop"
    local = compile_services(CTX, [s], {"default/web": [ep("10.244.0.5", node="node-1"), ep("10.244.1.2")]})
    assert local.elements["service-ips"]["10.96.0.20 . tcp . 80"].startswith("goto local-")
    ext = local.elements["service-nodeports"]["tcp . 30080"].removeprefix("goto ")
    assert local.chains[ext][0] == "ip saddr 10.244.0.0/16 goto " + local.chains[ext][2].split()[-1]
    assert "jump mark-for-masquerade" not in local.chains[ext][-1]  # external clients keep their address


def test_named_target_ports_and_udp():
    s = svc(ports=[{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"}])
    rs = compile_services(CTX, [s], {"default/web": [ep("10.244.1.2", port=5353, proto="UDP", name="dns")]})
    assert rs.elements["service-ips"]["10.96.0.20 . udp . 53"] == "goto balance-udp-1"
    assert rs.elements["udp-endpoints"] == {"10.96.0.20 . 53 . 0": "10.244.1.2 . 5353"}


def test_headless_gets_no_rules():
    rs = compile_services(CTX, [svc(clusterIP="None")], {"default/web": [ep("10.244.1.2")]})
    assert rs.elements.get("service-ips", {}) == {}


def test_diff_touches_only_what_changed():
    a = compile_services(CTX, [svc(), svc("api", clusterIP="10.96.0.21")],
                         {"default/web": [ep("10.244.1.2")], "default/api": [ep("10.244.1.9")]})
    b = compile_services(CTX, [svc(), svc("api", clusterIP="10.96.0.21")],
                         {"default/web": [ep("10.244.1.2"), ep("10.244.2.2")], "default/api": [ep("10.244.1.9")]})
    d = str(diff(a, b))
    assert "10.96.0.20" in d and "10.96.0.21" not in d and "10.244.1.9" not in d
    assert "delete table" not in d and not diff(b, b)
    assert str(full(b)).startswith("add table ip gingham-services\ndelete table ip gingham-services\n")


@pytest.mark.parametrize("spec,field", [
    ({"ports": [{"port": 0}]}, "spec.ports[0].port"),
    ({"ports": [{"port": 80, "nodePort": 30080}]}, "spec.ports[0].nodePort"),  # ClusterIP has none
    ({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}, "spec.ports[0].nodePort"),
    ({"clusterIP": "10.1.2.3", "ports": [{"port": 80}]}, "spec.clusterIP"),
    ({"selector": {"app": 5}, "ports": [{"port": 80}]}, "spec.selector"),
    ({"ports": [{"port": 80}, {"port": 81}]}, "spec.ports[0].name"),
    ({"sessionAffinity": "Cookie", "ports": [{"port": 80}]}, "spec.sessionAffinity"),
    ({"loadBalancerSourceRanges": ["nope"], "type": "LoadBalancer", "ports": [{"port": 80}]},
     "spec.loadBalancerSourceRanges[0]"),
])
def test_malformed_services_name_the_field(spec, field):
    with pytest.raises(ServiceError) as e:
        parse_service("default", "x", {"spec": spec}, "10.96.0.0/16")
    assert e.value.field == field


def test_countdown_numgen_gives_every_endpoint_the_same_chance():
    """A ClientIP-affinity Service picks its endpoint with `numgen random mod n == 0 goto ...`
    rules taken in order (the last one unconditional): each endpoint's chance, read from the
    compiled rules, is 1/k."""
    import re
    from fractions import Fraction
    for k in range(1, 9):
        eps = [ep(f"10.244.1.{i + 2}") for i in range(k)]
        rs = compile_services(CTX, [svc(sessionAffinity="ClientIP")], {"default/web": eps})
        chain = rs.elements["service-ips"]["10.96.0.20 . tcp . 80"].removeprefix("goto ")
        picks = [r for r in rs.chains[chain] if not r.startswith("ip saddr @affinity-")]
        left, chances = Fraction(1), {}
        for rule in picks:
            m = re.fullmatch(r"(?:numgen random mod (\d+) == 0 )?goto (\S+)", rule)
            assert m, rule
            p = Fraction(1, int(m[1])) if m[1] else Fraction(1)
            chances[m[2]] = left * p
            left -= left * p
        assert left == 0 and len(chances) == k
        assert set(chances.values()) == {Fraction(1, k)}


def test_proxy_rewrites_only_the_changed_service():
    from gingham.services.proxy import ServiceProxy
    scripts = []
    proxy = ServiceProxy(CTX, lambda tx: scripts.append(str(tx)))
    web, api = svc(), svc("api", clusterIP="10.96.0.21")
    eps = {"default/web": [ep("10.244.1.2")], "default/api": [ep("10.244.1.9")]}
    proxy.sync([web, api], eps)
    assert scripts[-1].startswith("add table ip gingham-services")
    proxy.sync([web, api], {**eps, "default/web": [ep("10.244.1.2"), ep("10.244.2.2")]})
    assert "10.96.0.20" in scripts[-1] and "10.96.0.21" not in scripts[-1] and "delete table" not in scripts[-1]
    assert "add element ip gingham-services hairpin { 10.244.2.2 . 10.244.2.2 }" in scripts[-1]
    made = "add chain ip gingham-services balance-tcp-2"
    assert scripts[-1].startswith(made + "\n")  # before the element that points at it
    proxy.sync([web, api], {**eps, "default/web": [ep("10.244.1.2"), ep("10.244.2.2")]})
    assert scripts[-1] == ""
    proxy.sync([api], eps)  # web deleted
    gone = "delete element ip gingham-services service-ips { 10.96.0.20 . tcp . 80 }"
    dropped = "delete chain ip gingham-services balance-tcp-2"
    assert gone in scripts[-1] and "10.96.0.21" not in scripts[-1]
    assert scripts[-1].index(gone) < scripts[-1].index(dropped)  # its dispatch goes first, then the chain
    assert "balance-tcp-1" not in scripts[-1]  # api still uses it
    assert "delete element ip gingham-services hairpin { 10.244.1.2 . 10.244.1.2 }" in scripts[-1]
