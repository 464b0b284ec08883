"""The datastore's key layout and codec, and the typed cache fed from it: by value, no etcd."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gingham.model import registry as reg
from gingham.model.objects import Cluster, ClusterState, ContainerPort, Namespace, Object, Pod
from gingham.sources.cache import Cache

NAME = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
LABELS = st.dictionaries(NAME, NAME, max_size=3)
PORTS = st.lists(st.builds(ContainerPort, st.integers(1, 65535), st.sampled_from(["TCP", "UDP", "SCTP"]),
                           st.one_of(st.just(""), NAME)), max_size=3).map(tuple)
PODS = st.builds(Pod, NAME, NAME, LABELS, st.one_of(st.just(""), NAME), PORTS,
                 st.one_of(st.just(""), NAME.map(lambda n: f"Deployment/{n}")))

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "shop", "name": "web"},
           "spec": {"clusterIP": "10.96.0.11", "selector": {"app": "web"}, "ports": [{"port": 80}]}}
POLICY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": {"namespace": "shop", "name": "deny"}, "spec": {"podSelector": {}}}


@given(PODS)
@settings(max_examples=200)
def test_a_pod_comes_back_as_it_went_in(pod: Pod) -> None:
    assert reg.decode_pod(reg.dumps(reg.encode_pod(pod))) == pod


@given(NAME, NAME, NAME, st.from_regex(r"10\.244\.[0-9]{1,2}\.[0-9]{1,2}", fullmatch=True), st.booleans(),
       st.one_of(st.just(0.0), st.floats(1, 2e9)))
def test_a_pod_status_comes_back_as_it_went_in(ns: str, name: str, node: str, ip: str, ready: bool,
                                               term: float) -> None:
    s = reg.PodStatus(ns, name, node, ip, ready, term)
    assert reg.decode_pod_status(reg.dumps(reg.encode_pod_status(s))) == s


def test_cluster_namespace_and_node_round_trip() -> None:
    c = Cluster("demo", ("a", "b"), "10.244.0.0/16", "10.96.0.0/16", 24, "host-gw", "cluster.local",
                ("192.168.200.1",), "192.168.200.200/29")
    assert reg.decode_cluster(reg.dumps(reg.encode_cluster(c))) == c
    n = Namespace("shop", {"team": "a"})
    assert reg.decode_namespace(reg.dumps(reg.encode_namespace(n))) == n
    node = reg.NodeInfo("a", "192.168.200.11", "10.244.0.0/24", "0e:00:00:00:00:01", "gl-x-node-a")
    assert reg.decode_node(reg.dumps(reg.encode_node(node))) == node


def test_keys_follow_kube_apiservers_layout() -> None:
    assert reg.object_key("Service", "shop", "web") == "/registry/services/specs/shop/web"
    assert reg.object_key("NetworkPolicy", "shop", "deny") == "/registry/networkpolicies/shop/deny"
    assert reg.pod_key("shop", "web-0") == "/registry/pods/shop/web-0"
    state = ClusterState(Cluster(), {"shop": Namespace("shop")}, {"shop/p": Pod("shop", "p", node_name="node-1")},
                         {"Service/shop/web": Object("Service", "shop", "web", SERVICE)})
    keys = reg.spec_keys(state, {"node-1": reg.NodeInfo("node-1", "192.168.200.11", "10.244.0.0/24")})
    assert set(keys) == {reg.CLUSTER, "/registry/namespaces/shop", "/registry/minions/node-1",
                         "/registry/pods/shop/p", "/registry/services/specs/shop/web"}
    assert all(reg.is_spec(k) for k in keys)
    for owned in (reg.REVISION, reg.pod_status_key("shop", "p"), reg.NODE_STATUS + "node-1",
                  reg.LEASES + "node-1", reg.RANGE_SERVICE_IPS):
        assert not reg.is_spec(owned)


@pytest.mark.parametrize("decode,value,why", [
    (reg.decode_pod, b"{", "not JSON"),
    (reg.decode_pod, b"[1]", "not a JSON object"),
    (reg.decode_pod, b'{"metadata": {"namespace": "a", "name": "b"}, "spec": {"containers": 5}}', "spec.containers"),
    (reg.decode_pod, b'{"metadata": {"namespace": "a", "name": "b", "labels": {"x": 1}}, "spec": {"containers": []}}',
     "metadata.labels"),
    (reg.decode_node, b'{"metadata": {"name": "a"}, "spec": {"podCIDR": "10.0.0.0/24"}, "status": {"addresses": []}}',
     "InternalIP"),
    (reg.decode_pod_status, b'{"metadata": {"namespace": "a", "name": "b"}, "status": {"nodeName": true}}',
     "status.nodeName"),
])
def test_invalid_values_are_refused_with_the_field(decode, value: bytes, why: str) -> None:
    with pytest.raises(reg.DecodeError) as e:
        decode(value)
    assert why in str(e.value)


def changes_of(cache: Cache, key: str, value: bytes | None, rev: int = 0) -> dict[str, set[str]]:
    ch: dict[str, set[str]] = defaultdict(set)
    cache.apply(key, value, ch, rev)
    return dict(ch)


def test_the_cache_types_what_it_ingests_and_says_what_changed() -> None:
    logged: list[str] = []
    cache = Cache(log=logged.append)
    assert changes_of(cache, reg.CLUSTER, reg.dumps(reg.encode_cluster(Cluster()))) == {"cluster": {""}}
    svc_key = reg.object_key("Service", "shop", "web")
    assert changes_of(cache, svc_key, reg.dumps(SERVICE)) == {"service": {"shop/web"}, "object": {"Service/shop/web"}}
    assert cache.services["shop/web"].cluster_ip == "10.96.0.11"
    assert changes_of(cache, svc_key, reg.dumps(SERVICE)) == {}  # the same bytes again: nothing changed
    pol_key = reg.object_key("NetworkPolicy", "shop", "deny")
    assert changes_of(cache, pol_key, reg.dumps(POLICY)) == {"policy": {"shop/deny"},
                                                            "object": {"NetworkPolicy/shop/deny"}}
    assert cache.policies["shop/deny"].name == "deny"
    assert changes_of(cache, pol_key, None) == {"policy": {"shop/deny"}, "object": {"NetworkPolicy/shop/deny"}}
    assert "shop/deny" not in cache.policies and "NetworkPolicy/shop/deny" not in cache.objects
    assert changes_of(cache, reg.LEASES + "node-1", b"{}", 7) == {"lease": {"node-1"}}
    assert cache.leases == {"node-1"} and cache.status_revision == 7
    assert changes_of(cache, reg.REVISION, b"{}", 9) == {"revision": {""}}
    assert cache.spec_revision == 9
    assert not logged


def test_an_invalid_value_is_skipped_logged_and_replaces_the_valid_one() -> None:
    logged: list[str] = []
    cache = Cache(log=logged.append)
    changes_of(cache, reg.CLUSTER, reg.dumps(reg.encode_cluster(Cluster())))
    key = reg.object_key("Service", "shop", "web")
    changes_of(cache, key, reg.dumps(SERVICE))
    bad = {**SERVICE, "spec": {**SERVICE["spec"], "clusterIP": "10.1.2.3"}}  # outside the service range
    assert changes_of(cache, key, reg.dumps(bad)) == {"service": {"shop/web"}, "object": {"Service/shop/web"}}
    assert "shop/web" not in cache.services and "Service/shop/web" not in cache.objects
    assert key in cache.invalid and key in logged[0] and "service range" in logged[0]
    changes_of(cache, reg.pod_key("shop", "p"), b"not json")
    assert "shop/p" not in cache.pods and "not JSON" in logged[1]
    changes_of(cache, key, reg.dumps(SERVICE))  # fixed: served again
    assert cache.services["shop/web"].cluster_ip == "10.96.0.11" and key not in cache.invalid


def test_a_service_seen_before_the_cluster_is_parsed_when_the_cluster_comes() -> None:
    cache = Cache(log=lambda m: None)
    changes_of(cache, reg.object_key("Service", "shop", "web"), reg.dumps(SERVICE))
    assert cache.services == {}
    ch = changes_of(cache, reg.CLUSTER, reg.dumps(reg.encode_cluster(Cluster())))
    assert "shop/web" in cache.services and ch["service"] == {"shop/web"}


def test_a_listing_replaces_the_cache_and_reports_the_difference() -> None:
    pod_a, pod_b = Pod("default", "a", {"x": "1"}, "node-1"), Pod("default", "b", {}, "node-2")
    cache = Cache(log=lambda m: None)
    first = [(reg.CLUSTER, reg.dumps(reg.encode_cluster(Cluster())), 1),
             (reg.pod_key("default", "a"), reg.dumps(reg.encode_pod(pod_a)), 2),
             (reg.pod_key("default", "b"), reg.dumps(reg.encode_pod(pod_b)), 3)]
    ch: dict[str, set[str]] = defaultdict(set)
    cache.load(first, 3, ch)
    assert set(cache.pods) == {"default/a", "default/b"} and cache.revision == 3
    moved = Pod("default", "a", {"x": "2"}, "node-1")
    second = [first[0], (reg.pod_key("default", "a"), reg.dumps(reg.encode_pod(moved)), 9)]
    ch = defaultdict(set)
    cache.load(second, 10, ch)
    assert dict(ch) == {"pod": {"default/a", "default/b"}}
    assert cache.pods == {"default/a": moved} and cache.revision == 10
    fresh = Cache(log=lambda m: None)
    fresh.load(second, 10, defaultdict(set))
    assert fresh.pods == cache.pods and fresh.raw == cache.raw


def test_endpoint_slices_by_resolved_ports_and_back() -> None:
    from gingham.model.services import Endpoint, Service, ServicePort
    svc = Service("shop", "web", "ClusterIP", "10.96.0.11", (ServicePort("http", "TCP", 80, "web"),), {"app": "web"})
    eps = [Endpoint("10.244.0.2", "node-1", "shop/web-0", ports=(("http", "TCP", 8080),)),
           Endpoint("10.244.1.2", "node-2", "shop/web-1", ready=False, serving=True, terminating=True,
                    ports=(("http", "TCP", 8080),)),
           Endpoint("10.244.2.2", "node-3", "shop/web-2", ports=(("http", "TCP", 9090),), hostname="h")]
    slices = reg.encode_slices(svc, eps)
    assert list(slices) == ["web", "web-1"]  # the larger group is named after the Service
    assert slices["web"]["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
    assert slices["web"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    assert slices["web"]["endpoints"][1]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    back = [e for doc in slices.values() for e in reg.decode_slice(reg.dumps(doc))[2]]
    assert sorted(back, key=lambda e: e.ip) == eps
    assert reg.encode_slices(svc, []) == {}
    assert not reg.is_spec(reg.ENDPOINT_SLICES + "shop/web") and not reg.is_spec(reg.SLICE_LEADER)
