"""Manifests by value: what a set of YAML files becomes, and how a bad one is refused.

The random side is tests/unit/test_manifest_fuzz.py; here each case says what it expects.
"""

from __future__ import annotations

import textwrap

import pytest

from gingham.model import manifest
from gingham.model.errors import ManifestError

CLUSTER = """
apiVersion: gingham.dev/v1alpha1
kind: Cluster
metadata: {name: shop}
spec: {nodes: 3, overlay: host-gw, loadBalancerPool: 192.168.200.200-192.168.200.210}
"""


def write(tmp_path, *docs: str, name: str = "cluster.yaml") -> str:
    p = tmp_path / name
    p.write_text("---\n".join(textwrap.dedent(d) for d in docs))
    return str(p)


def refused(tmp_path, *docs: str) -> ManifestError:
    path = write(tmp_path, *docs)
    with pytest.raises(ManifestError) as e:
        manifest.parse([path])
    assert e.value.file == path
    return e.value


def test_a_cluster_its_pods_replicas_and_objects(tmp_path):
    state = manifest.parse([write(tmp_path, CLUSTER, """
        apiVersion: v1
        kind: Pod
        metadata: {name: web, namespace: shop, labels: {app: web}}
        spec:
          nodeName: node-2
          hostname: w
          containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]
        """, """
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: db, namespace: shop}
        spec:
          replicas: 2
          serviceName: db
          selector: {matchLabels: {app: db}}
          template:
            metadata: {labels: {app: db, tier: data}}
            spec: {containers: [{name: c, resources: {limits: {cpu: 250m, memory: 64Mi}}}]}
        """, """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec: {selector: {app: web}, ports: [{port: 80, targetPort: http}]}
        """)])
    c = state.cluster
    assert (c.name, c.nodes, c.overlay, c.pod_cidr, c.service_cidr) == (
        "shop", ("node-1", "node-2", "node-3"), "host-gw", "10.244.0.0/16", "10.96.0.0/16")
    web = state.pods["shop/web"]
    assert (web.node_name, web.hostname, web.labels) == ("node-2", "w", {"app": "web"})
    assert [(p.name, p.port, p.protocol) for p in web.ports] == [("http", 8080, "TCP")]
    db0, db1 = state.pods["shop/db-0"], state.pods["shop/db-1"]
    assert (db0.hostname, db0.subdomain, db0.owner, db1.hostname) == ("db-0", "db", "StatefulSet/db", "db-1")
    assert (db0.cpu_millis, db0.memory_bytes) == (250, 64 * 2 ** 20)
    assert set(state.namespaces) == {"default", "shop"}
    assert set(state.objects) == {"StatefulSet/shop/db", "Service/shop/web"}


@pytest.mark.parametrize("doc,where,field,says", [
    ("apiVersion: v1\nkind: Ingress\nmetadata: {name: x}\n", "x", "apiVersion/kind", "not something the lab understands"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {containers: [{name: c}]}\n", "",
     "metadata.name", ""),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nodeName: node-9, containers: [{name: c}]}\n",
     "p", "spec.nodeName", "'node-9' is not a node of cluster shop"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, ports: [{containerPort: 70000}]}]}\n",
     "p", "spec.containers[0].ports[0].containerPort", ""),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 172.16.0.1, ports: [{port: 80}]}\n",
     "s", "spec.clusterIP", "10.96.0.0/16"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: a}}\n"
     "  template: {metadata: {labels: {app: b}}, spec: {containers: [{name: c}]}}\n",
     "d", "spec.selector.matchLabels", "does not match the template's labels"),
])
def test_a_bad_document_names_its_file_object_and_field(tmp_path, doc, where, field, says):
    e = refused(tmp_path, CLUSTER, doc)
    assert e.doc == 2 and e.field == field and says in e.msg
    assert where in e.obj


@pytest.mark.parametrize("spec,field,says", [
    ("{nodes: 0}", "spec.nodes", "between 1 and 64"),
    ("{nodes: [a, a]}", "spec.nodes", "unique"),
    ("{podCIDR: 10.244.0.1/16}", "spec.podCIDR", "host bits zero"),
    ("{serviceCIDR: 10.244.128.0/20}", "spec.serviceCIDR", "overlaps podCIDR"),
    ("{podCIDR: 10.244.0.0/24, nodes: 2}", "spec.podCIDR", "room for fewer than 2"),
    ("{overlay: ipip}", "spec.overlay", "vxlan, host-gw or bgp"),
    ("{nodes: 2, overlay: host-gw, racks: [{name: a, nodes: [node-1]}, {name: b, nodes: [node-2]}]}", "spec.overlay",
     "racks a and b are separate segments"),
    ("{nodes: 2, racks: [{name: a, nodes: [node-1, node-2]}, {name: b, nodes: [node-2]}]}", "spec.racks[1].nodes[0]",
     "in rack a already"),
    ("{nodes: 2, racks: [{name: a, nodes: [node-1]}]}", "spec.racks", "node-2 in none"),
    ("{nodes: 2, racks: [{name: a, nodes: [node-9]}]}", "spec.racks[0].nodes[0]", "not one of the nodes"),
    ("{overlay: vxlan, bgp: {asNumber: 64512}}", "spec.bgp", "only with overlay: bgp"),
    ("{overlay: bgp, bgp: {asNumber: 23456}}", "spec.bgp.asNumber", "AS_TRANS"),
    ("{overlay: bgp, bgp: {asNumber: 0}}", "spec.bgp.asNumber", "not an AS number"),
    ("{overlay: bgp, bgp: {routeReflectors: [node-9]}}", "spec.bgp.routeReflectors[0]", "not one of the nodes"),
    ("{overlay: bgp, bgp: {peers: [{address: router, asNumber: 64500}]}}", "spec.bgp.peers[0].address",
     "not an IPv4 address"),
    ("{overlay: bgp, bgp: {peers: [{address: 10.0.0.1, asNumber: 64512}]}}", "spec.bgp.peers[0].asNumber",
     "an external peer is eBGP"),
    ("{upstreamDNS: [resolver]}", "spec.upstreamDNS[0]", "not an IP address"),
])
def test_a_bad_cluster_is_refused_naming_the_field(tmp_path, spec, field, says):
    e = refused(tmp_path, f"apiVersion: gingham.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: c}}\nspec: {spec}\n")
    assert (e.doc, e.field) == (1, field) and says in e.msg, e


def test_a_bgp_cluster_has_its_as_reflectors_and_peers_and_keeps_them_through_the_datastore(tmp_path):
    from gingham.model.objects import BgpPeer, BgpSpec
    from gingham.model.registry import decode_cluster, dumps, encode_cluster
    path = write(tmp_path, "apiVersion: gingham.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\n"
                           "spec: {nodes: 3, overlay: bgp, bgp: {routeReflectors: [node-2], "
                           "peers: [{address: 192.168.200.1, asNumber: 64500}]}}\n")
    c = manifest.parse([path]).cluster
    assert c.bgp == BgpSpec(64512, ("node-2",), (BgpPeer("192.168.200.1", 64500),))  # 64512: the default AS
    assert decode_cluster(dumps(encode_cluster(c))) == c
    racked = write(tmp_path, "apiVersion: gingham.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\n"
                             "spec: {nodes: 3, racks: [{name: a, nodes: [node-1, node-2]}, {name: b, nodes: [node-3]}]}\n",
                   name="racked.yaml")
    c = manifest.parse([racked]).cluster
    assert c.racks == (("a", ("node-1", "node-2")), ("b", ("node-3",))) and c.rack_of("node-3") == 1
    assert decode_cluster(dumps(encode_cluster(c))) == c


def test_the_same_object_twice_is_refused_naming_both_places(tmp_path):
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n"
    e = refused(tmp_path, CLUSTER, pod, pod)
    assert e.doc == 3 and e.field == "metadata.name" and "defined twice" in e.msg and "document 2" in e.msg


def test_the_cluster_of_a_running_lab_cannot_change(tmp_path):
    base = manifest.parse([write(tmp_path, CLUSTER)])
    other = write(tmp_path, CLUSTER.replace("nodes: 3", "nodes: 4"), name="other.yaml")
    with pytest.raises(ManifestError, match="cannot change"):
        manifest.parse([other], base)
