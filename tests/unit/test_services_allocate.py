"""Service allocation by value: kept across updates, conflicts refused, and the Ranges exact."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gingham.model.objects import Cluster
from gingham.model.services import parse_service
from gingham.services.allocate import AllocationError, Bitmap, Ranges, allocate, ranges_of

CLUSTER = Cluster(load_balancer_pool="192.168.200.200-192.168.200.201")


def svc(typ: str = "ClusterIP", **spec: object) -> dict[str, object]:
    return {"spec": {"type": typ, "ports": [{"port": 80}], "selector": {"app": "x"}, **spec}}


def test_lowest_free_values_and_the_ranges_that_say_who_holds_them() -> None:
    raws, r = allocate(CLUSTER, {"a/one": svc(), "a/two": svc("NodePort"), "a/lb": svc("LoadBalancer")}, {}, Ranges.empty(CLUSTER))
    assert raws["a/lb"]["spec"]["clusterIP"] == "10.96.0.11"
    assert raws["a/one"]["spec"]["clusterIP"] == "10.96.0.12"
    assert raws["a/two"]["spec"]["clusterIP"] == "10.96.0.13"
    assert raws["a/lb"]["spec"]["ports"][0]["nodePort"] == 30000 and raws["a/two"]["spec"]["ports"][0]["nodePort"] == 30001
    assert raws["a/lb"]["status"] == {"loadBalancer": {"ingress": [{"ip": "192.168.200.200"}]}}
    assert r == ranges_of(raws, CLUSTER)


def test_an_update_keeps_what_was_allocated_and_others_keep_theirs() -> None:
    raws, r = allocate(CLUSTER, {"a/one": svc("NodePort"), "a/two": svc()}, {}, Ranges.empty(CLUSTER))
    again, r2 = allocate(CLUSTER, {"a/one": svc("NodePort", selector={"app": "y"})}, {"a/one": raws["a/one"]}, r)
    assert again["a/one"]["spec"]["clusterIP"] == raws["a/one"]["spec"]["clusterIP"]
    assert again["a/one"]["spec"]["ports"][0]["nodePort"] == raws["a/one"]["spec"]["ports"][0]["nodePort"]
    assert r2 == r


def test_a_taken_value_is_refused_and_names_its_holder() -> None:
    raws, r = allocate(CLUSTER, {"a/one": svc(clusterIP="10.96.0.50")}, {}, Ranges.empty(CLUSTER))
    with pytest.raises(AllocationError) as e:
        allocate(CLUSTER, {"a/two": svc(clusterIP="10.96.0.50")}, {}, r)
    assert "10.96.0.50 is already used by another Service" in str(e.value) and e.value.field == "spec.clusterIP"
    assert e.value.taken == ("ip", "10.96.0.50")
    with pytest.raises(AllocationError) as e:
        allocate(CLUSTER, {"a/dns": svc(clusterIP="10.96.0.10")}, {}, r)
    assert "kube-system/kube-dns" in str(e.value)
    _, r = allocate(CLUSTER, {"a/np": svc("NodePort", ports=[{"port": 80, "nodePort": 30100}])}, {}, r)
    with pytest.raises(AllocationError) as e:
        allocate(CLUSTER, {"a/np2": svc("NodePort", ports=[{"port": 80, "nodePort": 30100}])}, {}, r)
    assert e.value.field == "spec.ports[0].nodePort" and e.value.taken == ("port", 30100)


def test_a_released_service_frees_its_values() -> None:
    raws, r = allocate(CLUSTER, {"a/lb": svc("LoadBalancer")}, {}, Ranges.empty(CLUSTER))
    r.release("a/lb", raws["a/lb"])
    assert r == ranges_of({}, CLUSTER) and r.lbs == {}
    raws2, _ = allocate(CLUSTER, {"a/next": svc("LoadBalancer")}, {}, r)
    assert raws2["a/next"]["spec"]["clusterIP"] == raws["a/lb"]["spec"]["clusterIP"]


@given(st.lists(st.tuples(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]), st.booleans()),
                min_size=1, max_size=12), st.integers(1, 4))
@settings(max_examples=60, deadline=None)
def test_written_in_batches_no_value_is_held_twice_and_the_ranges_stay_exact(kinds, batch) -> None:
    everything: dict[str, dict] = {}
    ranges = Ranges.empty(CLUSTER)
    items = [(f"ns/s{i}", svc(t, externalTrafficPolicy="Local") if local and t != "ClusterIP" else svc(t))
             for i, (t, local) in enumerate(kinds)]
    for i in range(0, len(items), batch):
        chunk = dict(items[i:i + batch])
        raws, ranges = allocate(CLUSTER, chunk, {k: everything[k] for k in chunk if k in everything}, ranges)
        everything.update(raws)
    assert ranges == ranges_of(everything, CLUSTER)
    for key, raw in everything.items():  # allocated values are valid Service fields
        parse_service(*key.split("/"), raw, CLUSTER.service_cidr)
    ips = [r["spec"]["clusterIP"] for r in everything.values()]
    ports = [p["nodePort"] for r in everything.values() for p in r["spec"]["ports"] if p.get("nodePort")]
    ports += [r["spec"]["healthCheckNodePort"] for r in everything.values() if r["spec"].get("healthCheckNodePort")]
    assert len(set(ips)) == len(ips) and len(set(ports)) == len(ports)


@given(st.sets(st.integers(0, 299), max_size=60), st.integers(0, 310))
def test_a_bitmap_finds_the_lowest_free_offset(taken: set[int], start: int) -> None:
    b = Bitmap(300)
    for i in taken:
        b.add(i)
    want = next((i for i in range(start, 300) if i not in taken), None)
    assert b.first_free(start) == want
    assert Bitmap(300, bytes(b.data)) == b and all((i in b) == (i in taken) for i in range(300))
