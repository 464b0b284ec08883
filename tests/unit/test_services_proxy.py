"""The proxy's partial syncs, checked against a model of the kernel (kernel.fakenft.FakeNft).

Property: after any sequence of Service changes written as partial syncs, the table
equals the one a full sync of the last state writes, and no statement on the way was one
the kernel would refuse.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gingham.kernel.fakenft import FakeNft
from gingham.kernel.nftables import full
from gingham.model.services import Endpoint, parse_service
from gingham.services.compile import NodeContext, compile_services
from gingham.services.proxy import ServiceProxy

CTX = NodeContext("node-1", "192.168.200.11", "10.244.0.0/16", "10.96.0.0/16")
SHAPES = [
    {},
    {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]},
    {"type": "NodePort", "externalTrafficPolicy": "Local", "ports": [{"port": 80, "targetPort": 8080,
                                                                       "nodePort": 30081}]},
    {"internalTrafficPolicy": "Local"},
    {"sessionAffinity": "ClientIP"},
    {"ports": [{"port": 53, "protocol": "UDP", "targetPort": 8080}]},
    {"externalIPs": ["192.168.200.50"]},
]


def service(i: int, shape: int):
    spec = {"ports": [{"port": 80 + i, "targetPort": 8080}], "clusterIP": f"10.96.0.{20 + i}",
            "selector": {"app": f"s{i}"}, **SHAPES[shape]}
    if "nodePort" in str(spec):
        spec["ports"] = [{**spec["ports"][0], "nodePort": spec["ports"][0]["nodePort"] + 10 * i}]
    return parse_service("default", f"s{i}", {"spec": spec}, "10.96.0.0/16")


def endpoints(i: int, ips: list[int], local: list[bool]):
    return [Endpoint(f"10.244.{1 + (0 if here else 1)}.{ip}", "node-1" if here else "node-2",
                     f"default/p{i}-{ip}", True, True, False, (("", "TCP", 8080), ("", "UDP", 8080)))
            for ip, here in zip(ips, local)]


state = st.lists(st.tuples(st.integers(0, 3), st.integers(0, len(SHAPES) - 1),
                           st.lists(st.integers(2, 9), max_size=4, unique=True),
                           st.lists(st.booleans(), min_size=4, max_size=4)), max_size=4)


def world(picked):
    services, eps = {}, {}
    for i, shape, ips, local in picked:
        s = service(i, shape)
        services[s.key] = s
        eps[s.key] = endpoints(i, ips, local)
    return list(services.values()), eps


@settings(max_examples=150, deadline=None)
@given(st.lists(state, min_size=1, max_size=6))
def test_partial_syncs_end_where_a_full_sync_does(steps):
    kernel = FakeNft()
    proxy = ServiceProxy(CTX, kernel.run)
    for picked in steps:
        services, eps = world(picked)
        proxy.sync(services, eps)
        expected = FakeNft()
        expected.run(full(compile_services(CTX, services, eps)))
        assert kernel.dump() == expected.dump()
