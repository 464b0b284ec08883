"""Thrown bad manifests: each is accepted or refused with a ManifestError (or the allocator's
refusal), never a crash or a hang, all the way to the keys `lab up` would write.

Valid documents (the examples, and more shapes) are mutated at random paths: a value
replaced by junk of another type, a key removed or added, a document's bytes broken.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gingham.lab.cluster import Lab, LabError
from gingham.lab.store import Snapshot
from gingham.model import manifest
from gingham.model import registry as reg
from gingham.model.errors import ManifestError
from gingham.services.allocate import Ranges
from gingham.sources.cache import Cache

from ..helpers.mutations import mutate, time_limit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXTRA = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec: {type: ExternalName, externalName: example.com}
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: shop}
spec:
  type: LoadBalancer
  selector: {app: web}
  externalIPs: [192.168.200.150]
  loadBalancerSourceRanges: [10.0.0.0/8]
  externalTrafficPolicy: Local
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  ports: [{name: a, port: 80, targetPort: 8080, protocol: TCP}, {name: b, port: 81, nodePort: 30081}]
status: {loadBalancer: {ingress: [{ip: 192.168.200.201}]}}
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: shop}
spec: {clusterIP: None, selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}, matchExpressions: [{key: tier, operator: In, values: [a, b]}]}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}},
                    {namespaceSelector: {matchLabels: {team: a}}}], ports: [{port: http}, {port: 80, endPort: 90}]}]
  egress: [{to: [{namespaceSelector: {}}], ports: [{protocol: UDP, port: 53}]}]
"""


def base_documents() -> list[list[Any]]:
    out = []
    for name in sorted(os.listdir(os.path.join(ROOT, "examples"))):
        with open(os.path.join(ROOT, "examples", name)) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        out.append(docs + list(yaml.safe_load_all(EXTRA)))
    return out


BASES = base_documents()
def up_to_keys(path: str) -> None:
    """What `lab up` does before it builds anything: parse, schedule, allocate, encode."""
    parsed = manifest.schedule(manifest.parse([path]))
    state, _ = Lab("fuzz")._allocate(parsed, Snapshot(Cache(), Ranges.empty(parsed.cluster)))
    cidrs = state.cluster.node_cidrs()
    nodes = {n: reg.NodeInfo(n, "192.168.200.11", cidrs[n], "0e:00:00:00:00:01", "x") for n in state.cluster.nodes}
    reg.spec_keys(state, nodes)


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "400")), deadline=None,
          suppress_health_check=list(HealthCheck), derandomize=not os.environ.get("FUZZ_EXAMPLES"))
@given(st.sampled_from(range(len(BASES))), st.data(), st.sampled_from(["yaml", "bytes"]))
def test_bad_manifests_are_refused_cleanly(base: int, data: st.DataObject, how: str) -> None:
    docs = mutate(BASES[base], data)
    text = yaml.dump_all(docs).encode()
    if how == "bytes":
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.sampled_from([b"\xff", b"\x00", b"\t", b"{", b"&a ", b"*a", b"!!set "])) + \
            text[at:]
    with tempfile.NamedTemporaryFile("wb", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        with time_limit(10):
            try:
                up_to_keys(f.name)
            except (ManifestError, LabError):
                pass


def test_a_large_pool_is_a_range_not_a_list() -> None:
    text = ("apiVersion: gingham.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\n"
            "spec: {nodes: 1, loadBalancerPool: 10.0.0.0/8}\n---\napiVersion: v1\nkind: Service\n"
            "metadata: {name: s}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        with time_limit(5):
            up_to_keys(f.name)


def test_dates_and_sets_are_refused_where_they_would_not_serialize() -> None:
    for extra in ("metadata: {name: s, annotations: {when: 2024-01-01}}",
                  "metadata: {name: s}\nstatus: !!set {a}"):
        text = f"apiVersion: v1\nkind: Service\n{extra}\nspec: {{ports: [{{port: 80}}]}}\n"
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(text)
            f.flush()
            try:
                up_to_keys(f.name)
            except ManifestError as e:
                assert "document 1" in str(e)
    assert datetime.date  # the type such values load as


POLICY = ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\n"
          "spec: {podSelector: {}, ingress: [%s]}\n")


@pytest.mark.parametrize("text,field", [
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, ports: true}]}\n",
     "spec.containers[0].ports"),
    (POLICY % "{from: [{ipBlock: [10.0.0.0/8]}]}", "ipBlock"),
    (POLICY % "{from: [{ipBlock: {cidr: 5}}]}", "ipBlock.cidr"),
    (POLICY % "{from: [{ipBlock: {cidr: 10.0.0.0/8, except: 10.1.0.0/16}}]}", "ipBlock.except"),
    (POLICY % "{from: 5}", "spec.ingress[0].from"),
    (POLICY % "{ports: [{protocol: [TCP]}]}", "protocol"),
    (POLICY % "{from: [{podSelector: {matchExpressions: [{key: a, operator: In, values: [1]}]}}]}", "values"),
])
def test_values_of_the_wrong_type_are_refused_naming_the_field(text: str, field: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        with pytest.raises(ManifestError) as e:
            up_to_keys(f.name)
    assert field in e.value.field, e.value
