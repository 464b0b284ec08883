"""The agent's controllers' pure parts, by value: pod lifecycle decisions and the LB election."""

from __future__ import annotations

from gingham.agent.loadbalancer import elect
from gingham.agent.pods import GRACE_SECONDS, pod_actions
from gingham.model.services import Endpoint, Service, ServicePort


def test_a_pod_no_longer_wanted_terminates_first_and_goes_after_its_grace() -> None:
    records = {"a/keep": {}, "a/gone": {}, "a/ending": {"terminating": 100.0}, "a/late": {"terminating": 90.0}}
    leaving, due = pod_actions({"a/keep"}, records, now=100.0 + GRACE_SECONDS / 2)
    assert leaving == ["a/gone"] and due == ["a/late"]
    assert pod_actions({"a/keep", "a/gone", "a/ending", "a/late"}, records, 1e9) == ([], [])


def lb(name: str, ip: str, local: bool = False) -> Service:
    return Service("d", name, "LoadBalancer", "10.96.0.20", (ServicePort("", "TCP", 80, 80, 30080),), {"a": "b"},
                   external_policy_local=local, health_check_node_port=31000 if local else 0, load_balancer_ip=ip)


def test_every_address_has_exactly_one_announcer_among_the_live_nodes() -> None:
    services = [lb(f"s{i}", f"192.168.200.{200 + i}") for i in range(20)]
    nodes = ["node-1", "node-2", "node-3"]
    won = [elect(services, {}, nodes, n) for n in nodes]
    assert set().union(*won) == {s.load_balancer_ip for s in services}
    assert sum(len(w) for w in won) == 20 and all(won)  # disjoint, and spread over the nodes
    without = [elect(services, {}, ["node-1", "node-3"], n) for n in ("node-1", "node-3")]
    assert set().union(*without) == {s.load_balancer_ip for s in services}  # node-2 gone: the others take its share
    assert won[0] <= without[0] and won[2] <= without[1]  # and nobody else's moves


def test_with_external_traffic_policy_local_only_nodes_with_a_ready_endpoint_stand() -> None:
    svc = lb("local", "192.168.200.250", local=True)
    eps = {svc.key: [Endpoint("10.244.1.2", "node-2", "d/p", ready=True),
                     Endpoint("10.244.2.2", "node-3", "d/q", ready=False)]}
    assert [n for n in ("node-1", "node-2", "node-3") if elect([svc], eps, ["node-1", "node-2", "node-3"], n)] == \
        ["node-2"]
    assert not any(elect([svc], eps, ["node-1", "node-3"], n) for n in ("node-1", "node-3"))


def test_network_programming_latency_runs_from_the_earliest_pod_change_a_service_saw() -> None:
    from gingham.agent.services import programming_latencies
    from gingham.model.objects import Pod
    from gingham.model.registry import PodStatus, decode_pod_status, dumps, encode_pod_status
    from gingham.sources.cache import Cache
    cache = Cache()
    cache.services = {"d/web": Service("d", "web", selector={"app": "web"}),
                      "d/db": Service("d", "db", selector={"app": "db"}),
                      "d/manual": Service("d", "manual")}  # no selector: its endpoints are nobody's pods
    for name, app, changed in (("web-0", "web", 100.0), ("web-1", "web", 100.5), ("db-0", "db", 99.0)):
        cache.pods[f"d/{name}"] = Pod("d", name, {"app": app})
        cache.pod_status[f"d/{name}"] = PodStatus("d", name, "node-1", "10.244.0.2", True, changed=changed)
    touched = {"d/web", "d/db", "d/manual", "d/gone"}
    assert sorted(programming_latencies(cache, touched, ["d/web-0", "d/web-1", "d/db-0"], since=0, now=101.0)) == \
        [1.0, 2.0]  # web from web-0's change (the earlier), db from db-0's
    assert programming_latencies(cache, touched, ["d/web-1"], since=0, now=101.0) == [0.5]
    assert programming_latencies(cache, touched, ["d/web-0"], since=100.2, now=101.0) == []  # before the agent
    assert programming_latencies(cache, {"d/db"}, ["d/web-0"], since=0, now=101.0) == []  # not its pod
    st = cache.pod_status["d/web-1"]  # the transition time goes through the datastore with its fraction
    assert decode_pod_status(dumps(encode_pod_status(st))).changed == 100.5
