"""Incremental controllers agree with recomputing everything: endpoints and DNS records."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gingham.dns import records
from gingham.model.endpoints import EndpointIndex, pod_view
from gingham.model.objects import ContainerPort, Pod
from gingham.model.registry import PodStatus
from gingham.model.services import Service, ServicePort, derive_endpoints

NAMESPACES = ["a", "b"]
APPS = ["x", "y", "z"]
PODS = [f"p{i}" for i in range(5)]
SERVICES = [f"s{i}" for i in range(4)]

pod_change = st.tuples(st.just("pod"), st.sampled_from(NAMESPACES), st.sampled_from(PODS),
                       st.one_of(st.none(), st.tuples(st.sampled_from(APPS), st.booleans(), st.booleans(),
                                                      st.sampled_from(["node-1", "node-2"]))))
svc_change = st.tuples(st.just("svc"), st.sampled_from(NAMESPACES), st.sampled_from(SERVICES),
                       st.one_of(st.none(), st.tuples(st.sampled_from(APPS), st.booleans(), st.booleans())))


def make_service(ns: str, name: str, app: str, headless: bool, named: bool) -> Service:
    return Service(ns, name, "ClusterIP", "None" if headless else f"10.96.{NAMESPACES.index(ns)}.{SERVICES.index(name) + 11}",
                   (ServicePort("http" if named else "", "TCP", 80, "web" if named else 8080),), {"app": app})


def ip_of(ns: str, name: str) -> str:
    return f"10.244.{NAMESPACES.index(ns)}.{PODS.index(name) + 2}"


@given(st.lists(st.one_of(pod_change, svc_change), min_size=1, max_size=25), st.integers(1, 5))
@settings(max_examples=150, deadline=None)
def test_endpoints_and_records_kept_by_changes_equal_recomputing_everything(steps, batch) -> None:
    services: dict[str, Service] = {}
    pods: dict[str, Pod] = {}
    status: dict[str, PodStatus] = {}
    index = EndpointIndex()
    dns = records.new_index("cluster.local")
    for i in range(0, len(steps), batch):
        changed_svcs: set[str] = set()
        changed_pods: set[str] = set()
        for kind, ns, name, what in steps[i:i + batch]:
            key = f"{ns}/{name}"
            if kind == "svc":
                changed_svcs.add(key)
                if what is None:
                    services.pop(key, None)
                else:
                    services[key] = make_service(ns, name, *what)
            else:
                changed_pods.add(key)
                if what is None:
                    pods.pop(key, None)
                    status.pop(key, None)
                else:
                    app, ready, terminating, node = what
                    pods[key] = Pod(ns, name, {"app": app}, node, (ContainerPort(8080, "TCP", "web"),))
                    status[key] = PodStatus(ns, name, node, ip_of(ns, name), ready, 5.0 if terminating else 0.0)
        views = {k: pod_view(pods[k], status.get(k)) if k in pods else None for k in changed_pods}
        touched = index.update(services, changed_svcs, views) | changed_svcs
        for k in touched:
            if k in services:
                dns.put(f"service/{k}", *records.service_records(services[k], index.endpoints.get(k, []),
                                                                 "cluster.local"))
            else:
                dns.drop(f"service/{k}")
        for k in changed_pods:
            if k in pods:
                dns.put(f"pod/{k}", records.pod_records(pods[k].namespace, status[k].ip, "cluster.local"))
            else:
                dns.drop(f"pod/{k}")
        all_views = [v for k, p in pods.items() if (v := pod_view(p, status.get(k))) is not None]
        want = derive_endpoints(list(services.values()), all_views)
        assert index.endpoints == want
        whole = records.build(list(services.values()), want, [(p.namespace, status[k].ip) for k, p in pods.items()],
                              "cluster.local")
        assert dns.names == whole.names
        assert {n: sorted(r) for n, r in dns.records.items()} == {n: sorted(r) for n, r in whole.records.items()}
