"""NetworkPolicy conformance on the e2e model (namespaces x, y, z; pods a, b, c serving 80 and
81 on TCP and UDP): each policy, written from the API documentation, is applied to a running
lab and every cell is probed; the kernel must agree with the evaluator, and key cells are
checked against what the documentation says."""

from __future__ import annotations

import os
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gingham.lab.cluster import Lab
from gingham.lab.netpol_cmds import kernel_matrix, probe_matrix, world_from_lab
from gingham.lab.trace import trace_connection
from gingham.netpol.evaluate import evaluate

from .conftest import shared_lab

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "netpol.yaml")


lab = shared_lab("n", lambda tmp_path_factory: [EXAMPLE])



def apply(lab: Lab, tmp_path, body: str, name: str = "policy.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    lab.apply([str(path)])
    return str(path)


def check(lab: Lab, port: int = 80, protocol: str = "TCP") -> dict[tuple[str, str], bool]:
    """Probes every cell; fails on any cell where the kernel and the evaluator disagree."""
    world = world_from_lab(lab)
    pods = sorted((p for p in world.pods if p.namespace != "kube-system"), key=lambda p: p.key)
    probed = probe_matrix(lab, world, pods, port, protocol)
    truth = {(a.key, b.key): evaluate(world, a.ip, b.ip, port, protocol).allowed for a in pods for b in pods}
    wrong = {k: (truth[k], probed[k]) for k in truth if truth[k] != probed[k]}
    assert not wrong, f"kernel disagrees with the evaluator on {port}/{protocol}: {wrong}"
    traced = kernel_matrix(lab, pods, port, protocol)  # and the tables, read back and traced, say the same
    wrong = {k: (truth[k], traced[k]) for k in truth if truth[k] != traced[k]}
    assert not wrong, f"the traced tables disagree with the evaluator on {port}/{protocol}: {wrong}"
    return truth


POLICIES = {
    "deny-all-ingress-in-x": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny, namespace: x}
        spec: {podSelector: {}}
        """, [(("y/a", "x/b"), False), (("x/a", "x/b"), False), (("x/a", "y/b"), True)]),
    "allow-from-same-namespace": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: same-ns, namespace: x}
        spec: {podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}
        """, [(("x/a", "x/b"), True), (("y/a", "x/b"), False)]),
    "allow-from-namespace-y": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: from-y, namespace: x}
        spec: {podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}
        """, [(("y/c", "x/a"), True), (("z/c", "x/a"), False), (("z/c", "x/b"), True)]),
    "and-of-namespace-and-pod": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: and, namespace: x}
        spec:
          podSelector: {}
          ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]}]
        """, [(("y/b", "x/a"), True), (("y/a", "x/a"), False), (("z/b", "x/a"), False)]),
    "or-of-namespace-or-pod": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: or, namespace: x}
        spec:
          podSelector: {}
          ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]}]
        """, [(("y/a", "x/a"), True), (("x/b", "x/a"), True), (("z/b", "x/a"), False)]),
    "match-expressions-notin": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: expr, namespace: x}
        spec:
          podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}
          ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [z]}]}}]}]
        """, [(("z/a", "x/a"), False), (("z/a", "x/c"), True), (("y/a", "x/b"), True)]),
    "named-port-and-range": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: ports, namespace: x}
        spec:
          podSelector: {}
          ingress: [{ports: [{port: serve-81-tcp}]}, {ports: [{port: 80, endPort: 80, protocol: UDP}]}]
        """, [(("y/a", "x/a"), False)]),
    "ip-block-except": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: ipblock, namespace: x}
        spec:
          podSelector: {}
          ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.1.0/24]}}]}]
        """, []),
    "egress-deny-except-dns-and-y": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: egress, namespace: x}
        spec:
          podSelector: {}
          policyTypes: [Egress]
          egress:
          - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}]
            ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
          - to: [{namespaceSelector: {matchLabels: {ns: y}}}]
        """, [(("x/a", "y/b"), True), (("x/a", "z/b"), False), (("x/a", "x/b"), False), (("z/a", "x/a"), True)]),

    "deny-all-egress-in-y": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny-egress, namespace: y}
        spec: {podSelector: {}, policyTypes: [Egress]}
        """, [(("y/a", "x/a"), False), (("x/a", "y/a"), True), (("y/a", "y/b"), False)]),
    "deny-all-both-directions": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny-both, namespace: z}
        spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
        """, [(("z/a", "x/a"), False), (("x/a", "z/a"), False), (("x/a", "y/a"), True)]),
    "allow-all-ingress-overrides-deny": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny, namespace: x}
        spec: {podSelector: {}}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: allow-all, namespace: x}
        spec: {podSelector: {}, ingress: [{}]}
        """, [(("z/c", "x/a"), True), (("y/b", "x/c"), True)]),
    "empty-from-allows-all-sources-on-a-port": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: port-only, namespace: x}
        spec: {podSelector: {matchLabels: {pod: b}}, ingress: [{ports: [{port: 80, protocol: TCP}]}]}
        """, [(("z/a", "x/b"), True)]),
    "ingress-on-81-only": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: only-81, namespace: y}
        spec: {podSelector: {}, ingress: [{ports: [{port: 81}]}]}
        """, [(("x/a", "y/a"), False)]),
    "namespace-selector-empty-means-all-namespaces": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: all-ns, namespace: x}
        spec:
          podSelector: {}
          ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: c}}}]}]
        """, [(("z/c", "x/a"), True), (("y/c", "x/b"), True), (("z/b", "x/a"), False)]),
    "pod-selector-alone-is-same-namespace-only": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: same-ns-c, namespace: x}
        spec: {podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {pod: c}}}]}]}
        """, [(("x/c", "x/a"), True), (("y/c", "x/a"), False)]),
    "exists-and-doesnotexist": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: exists, namespace: x}
        spec:
          podSelector: {matchExpressions: [{key: pod, operator: Exists}]}
          ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: DoesNotExist}]}}]}]
        """, [(("y/a", "x/a"), False), (("x/b", "x/a"), False)]),
    "ip-block-single-pod": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: ipblock-y, namespace: z}
        spec:
          podSelector: {matchLabels: {pod: a}}
          ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.0.0/24, 10.244.2.0/24]}}]}]
        """, []),
    "egress-to-ip-block-except": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: egress-ipblock, namespace: y}
        spec:
          podSelector: {matchLabels: {pod: c}}
          policyTypes: [Egress]
          egress: [{to: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.1.0/24]}}]}]
        """, []),
    "egress-named-port-on-destination": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: egress-named, namespace: z}
        spec:
          podSelector: {}
          policyTypes: [Egress]
          egress: [{ports: [{port: serve-80-tcp}]}]
        """, [(("z/a", "x/a"), True), (("z/a", "y/b"), True)]),
    "two-policies-union": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: from-y, namespace: x}
        spec: {podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: from-z-c, namespace: x}
        spec:
          podSelector: {matchLabels: {pod: a}}
          ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}, podSelector: {matchLabels: {pod: c}}}]}]
        """, [(("y/a", "x/a"), True), (("z/c", "x/a"), True), (("z/a", "x/a"), False), (("x/b", "x/a"), False)]),
    "egress-and-ingress-both-must-allow": ("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: y-egress-to-x, namespace: y}
        spec:
          podSelector: {}
          policyTypes: [Egress]
          egress: [{to: [{namespaceSelector: {matchLabels: {ns: x}}}]}]
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: x-from-z, namespace: x}
        spec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}}]}]}
        """, [(("y/a", "x/a"), False), (("z/a", "x/a"), True), (("y/a", "z/a"), False)]),
}


@pytest.mark.parametrize("name", list(POLICIES))
def test_policy_matrix_matches_the_kernel(name, lab, tmp_path):
    body, expect = POLICIES[name]
    path = apply(lab, tmp_path, body)
    try:
        truth = check(lab, 80)
        for (src, dst), allowed in expect:
            assert truth[(src, dst)] == allowed, f"{src} -> {dst} should be {'allowed' if allowed else 'denied'}"
            (end,) = trace_connection(lab, src, dst, 80, "TCP")["endpoints"]  # `lab trace` reads the kernel
            assert end["policy"]["allowed"] == allowed, (src, dst, end["policy"])
        if name == "ingress-on-81-only":
            assert check(lab, 81)[("x/a", "y/a")]
        if name == "named-port-and-range":
            t81 = check(lab, 81)
            assert t81[("y/a", "x/a")] and not truth[("y/a", "x/a")]
            assert check(lab, 80, "UDP")[("y/a", "x/a")]
        if name == "egress-deny-except-dns-and-y":
            out = os.popen(f"ip netns exec {os.path.basename(lab.target_netns('x/a'))} "
                           "dig +short +time=2 +tries=1 +search a.y.pod.cluster.local kube-dns.kube-system").read()
            assert "10.96.0.10" in out  # a pod whose egress is denied still resolves names
    finally:
        lab.delete([path])


def test_updates_label_changes_and_deletion_take_effect(lab, tmp_path):
    body = """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: web, namespace: y}
        spec: {podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]}
        """
    path = apply(lab, tmp_path, body)
    assert not check(lab)[("y/b", "y/a")]
    # a label change on a pod (the same pod, the same address) lets it in
    pod = yaml.safe_load(open(EXAMPLE).read().split("---")[8])
    assert pod["metadata"]["namespace"] == "y" and pod["metadata"]["name"] == "b"
    pod["metadata"]["labels"]["role"] = "client"
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(pod))
    lab.apply([str(tmp_path / "b.yaml")])
    assert check(lab)[("y/b", "y/a")]
    # the policy is updated to a namespace selector: y/b is out again, z is in
    apply(lab, tmp_path, body.replace("podSelector: {matchLabels: {role: client}}",
                                      "namespaceSelector: {matchLabels: {ns: z}}"))
    t = check(lab)
    assert not t[("y/b", "y/a")] and t[("z/c", "y/a")]
    lab.delete([path])
    assert check(lab)[("y/b", "y/a")]
    del pod["metadata"]["labels"]["role"]
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(pod))
    lab.apply([str(tmp_path / "b.yaml")])


selectors = st.sampled_from([{}, {"matchLabels": {"pod": "a"}}, {"matchLabels": {"pod": "b"}},
                             {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["c"]}]}])
ns_selectors = st.sampled_from([None, {}, {"matchLabels": {"ns": "y"}},
                                {"matchExpressions": [{"key": "ns", "operator": "In", "values": ["x", "z"]}]}])
ports = st.sampled_from([None, [{"port": 80}], [{"port": 81}], [{"port": "serve-80-tcp"}], [{"port": 79, "endPort": 80}]])


@st.composite
def policies(draw):
    peer_ns = draw(ns_selectors)
    peer = {"podSelector": draw(selectors)} if peer_ns is None else {"namespaceSelector": peer_ns}
    if draw(st.booleans()) and peer_ns is not None:
        peer["podSelector"] = draw(selectors)
    rule = {"from": [peer]}
    if (p := draw(ports)) is not None:
        rule["ports"] = p
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "random", "namespace": draw(st.sampled_from("xyz"))},
            "spec": {"podSelector": draw(selectors), "ingress": [rule]}}


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(policy=policies())
def test_random_policies_evaluator_and_kernel_agree(lab, tmp_path_factory, policy):
    path = tmp_path_factory.mktemp("random") / "random.yaml"
    path.write_text(yaml.safe_dump(policy))
    lab.apply([str(path)])
    try:
        check(lab, 80)
    finally:
        lab.delete([str(path)])


def test_an_invalid_policy_is_refused_and_the_rules_in_force_stay(lab, tmp_path):
    from gingham.model.manifest import ManifestError
    good = apply(lab, tmp_path, POLICIES["deny-all-ingress-in-x"][0], "good.yaml")
    try:
        rev = lab.revision()
        before = check(lab)
        bad = tmp_path / "bad.yaml"
        bad.write_text(textwrap.dedent("""
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: bad, namespace: x}
            spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]}]}
            """))
        with pytest.raises(ManifestError) as e:
            lab.apply([str(bad)])
        assert "ipBlock.except[0]" in e.value.field and "inside the cidr" in e.value.msg
        assert lab.revision() == rev and check(lab) == before
    finally:
        lab.delete([good])
