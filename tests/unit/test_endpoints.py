"""EndpointSlice derivation by value: pods and Services in, endpoints and discovery.k8s.io/v1 out.

Facts from the Kubernetes EndpointSlice controller: endpoints are a Service's selected pods of
its namespace that have an address, sorted by address; a named targetPort resolves per pod
(pods that lack it are left out); a terminating pod is not ready but may still be serving;
publishNotReadyAddresses makes every endpoint ready; a hostname only for pods whose subdomain
is the Service; a Service without a selector, or an ExternalName, gets none from the controller.
"""

from __future__ import annotations

from gingham.model.registry import decode_slice, encode_slices
from gingham.model.services import PodView, derive_endpoints, parse_service


def svc(name: str, ns: str = "shop", **spec):
    spec.setdefault("ports", [{"name": "http", "port": 80, "targetPort": "http"}])
    spec.setdefault("selector", {"app": name})
    return parse_service(ns, name, {"spec": spec}, "10.96.0.0/16")


def pod(name: str, ip: str, ports=(("http", "TCP", 8080),), ns: str = "shop", app: str = "web", **kw) -> PodView:
    return PodView(ns, name, {"app": app}, kw.pop("node", "node-1"), ip, kw.pop("ready", True), ports=ports, **kw)


def test_selected_pods_of_the_namespace_with_an_address_sorted_by_address():
    pods = [pod("b", "10.244.1.10"), pod("a", "10.244.1.9"), pod("c", "10.244.0.20", node="node-2"),
            pod("pending", ""), pod("other-ns", "10.244.1.3", ns="bank"), pod("other-app", "10.244.1.4", app="db")]
    eps = derive_endpoints([svc("web")], pods)["shop/web"]
    assert [(e.ip, e.pod, e.node, e.ports) for e in eps] == [
        ("10.244.0.20", "shop/c", "node-2", (("http", "TCP", 8080),)),
        ("10.244.1.9", "shop/a", "node-1", (("http", "TCP", 8080),)),
        ("10.244.1.10", "shop/b", "node-1", (("http", "TCP", 8080),))]


def test_a_named_target_port_resolves_per_pod_and_pods_without_it_are_left_out():
    pods = [pod("a", "10.244.1.2"), pod("b", "10.244.1.3", ports=(("http", "TCP", 9090),)),
            pod("c", "10.244.1.4", ports=(("metrics", "TCP", 9100),))]
    eps = derive_endpoints([svc("web")], pods)["shop/web"]
    assert [(e.pod, e.ports) for e in eps] == [("shop/a", (("http", "TCP", 8080),)),
                                               ("shop/b", (("http", "TCP", 9090),))]
    slices = encode_slices(svc("web"), eps)  # one slice per set of resolved ports
    assert sorted(slices) == ["web", "web-1"]
    assert {s["ports"][0]["port"] for s in slices.values()} == {8080, 9090}


def test_conditions_of_ready_not_ready_and_terminating_pods():
    pods = [pod("up", "10.244.1.2"), pod("starting", "10.244.1.3", ready=False),
            pod("ending", "10.244.1.4", terminating=True)]
    eps = derive_endpoints([svc("web")], pods)["shop/web"]
    assert [(e.pod, e.ready, e.serving, e.terminating) for e in eps] == [
        ("shop/up", True, True, False), ("shop/starting", False, False, False), ("shop/ending", False, True, True)]
    published = derive_endpoints([svc("web", publishNotReadyAddresses=True)], pods)["shop/web"]
    assert all(e.ready for e in published)


def test_hostnames_only_under_the_governing_service():
    pods = [pod("db-0", "10.244.1.2", hostname="db-0", subdomain="web"),
            pod("x", "10.244.1.3", hostname="x", subdomain="elsewhere")]
    eps = derive_endpoints([svc("web")], pods)["shop/web"]
    assert [e.hostname for e in eps] == ["db-0", ""]


def test_no_selector_and_external_name_get_nothing():
    plain = parse_service("shop", "manual", {"spec": {"ports": [{"port": 80}]}}, "10.96.0.0/16")
    ext = parse_service("shop", "ext", {"spec": {"type": "ExternalName", "externalName": "example.org"}},
                        "10.96.0.0/16")
    out = derive_endpoints([plain, ext], [pod("a", "10.244.1.2")])
    assert "shop/manual" not in out and "shop/ext" not in out


def test_a_slice_is_kubernetes_shaped_and_reads_back_as_the_same_endpoints():
    import json
    s = svc("web")
    eps = derive_endpoints([s], [pod("a", "10.244.1.2"), pod("b", "10.244.2.2", node="node-3", terminating=True)])
    (slice_,) = encode_slices(s, eps["shop/web"]).values()
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
    assert slice_["endpoints"][1] == {
        "addresses": ["10.244.2.2"], "nodeName": "node-3",
        "conditions": {"ready": False, "serving": True, "terminating": True},
        "targetRef": {"kind": "Pod", "namespace": "shop", "name": "b"}}
    assert decode_slice(json.dumps(slice_).encode()) == ("shop", "web", eps["shop/web"])
    assert encode_slices(s, []) == {}
