"""Readiness probes by value: when they run, what their results make of Ready, and how a
manifest's readinessProbe is read and refused."""

from __future__ import annotations

import tempfile

import pytest

from gingham.agent.probes import ProbeTracker, port_number
from gingham.model import manifest
from gingham.model import registry as reg
from gingham.model.errors import ManifestError
from gingham.model.objects import ContainerPort, Pod, Probe


def test_initial_delay_period_and_thresholds() -> None:
    t = ProbeTracker(Probe("tcpSocket", 80, initial_delay=5, period=2, success_threshold=2, failure_threshold=3), 100)
    assert not t.due(104.9) and t.due(105)
    assert not t.ready and not t.record(True, 105)      # one success of two
    assert not t.due(106) and t.due(107)
    assert t.record(True, 107) and t.ready             # two in a row: Ready
    assert not t.record(False, 109) and not t.record(False, 111) and t.ready  # two failures of three
    assert t.record(False, 113) and not t.ready        # three in a row: not Ready
    assert not t.record(True, 115) and not t.ready     # a success resets the count, one is not enough
    assert t.record(True, 117) and t.ready


def test_a_named_port_resolves_on_the_pod() -> None:
    pod = Pod("d", "p", ports=(ContainerPort(8080, "TCP", "http"),))
    assert port_number(Probe("httpGet", "http"), pod) == 8080
    assert port_number(Probe("httpGet", "nope"), pod) == 0
    assert port_number(Probe("tcpSocket", 81), pod) == 81


POD = """apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  terminationGracePeriodSeconds: 7
  containers:
  - name: c
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: %s
"""


def parse(probe: str) -> Pod:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(POD % probe)
        f.flush()
        return manifest.parse([f.name]).pods["default/p"]


def test_probes_are_read_and_survive_the_datastore() -> None:
    pod = parse("{httpGet: {port: http, path: /healthz}, periodSeconds: 2, failureThreshold: 1}")
    assert pod.readiness == Probe("httpGet", "http", "/healthz", (), 0, 2, 1, 1, 1) and pod.grace_seconds == 7.0
    assert reg.decode_pod(reg.dumps(reg.encode_pod(pod))) == pod
    pod = parse("{exec: {command: [test, -e, /tmp/x]}, initialDelaySeconds: 3}")
    assert pod.readiness == Probe("exec", 0, "/", ("test", "-e", "/tmp/x"), 3)
    assert reg.decode_pod(reg.dumps(reg.encode_pod(pod))) == pod


@pytest.mark.parametrize("probe,field", [
    ("{}", "readinessProbe"),
    ("{tcpSocket: {port: 80}, exec: {command: [x]}}", "readinessProbe"),
    ("{tcpSocket: {port: grpc}}", "tcpSocket.port"),
    ("{tcpSocket: {port: 80}, periodSeconds: 0}", "periodSeconds"),
    ("{httpGet: {port: 80, path: healthz}}", "httpGet.path"),
    ("{httpGet: {port: 80, scheme: HTTPS}}", "httpGet.scheme"),
    ("{exec: {command: []}}", "exec.command"),
    ("[1]", "readinessProbe"),
])
def test_bad_probes_are_refused_naming_the_field(probe: str, field: str) -> None:
    with pytest.raises(ManifestError) as e:
        parse(probe)
    assert field in e.value.field


@pytest.mark.parametrize("text,value", [("500m", 0.5), ("2", 2), ("1.5", 1.5), ("128Mi", 128 << 20), ("1Gi", 1 << 30),
                                        ("1G", 10**9), ("100k", 10**5), ("1e6", 10**6), (3, 3)])
def test_quantities(text: object, value: float) -> None:
    assert manifest.quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "abc", "12Xi", "-1", [1], True])
def test_bad_quantities(text: object) -> None:
    with pytest.raises(ValueError):
        manifest.quantity(text)


def test_limits_are_read_and_survive_the_datastore() -> None:
    pod = parse("{tcpSocket: {port: 8080}}\n    resources: {limits: {cpu: 250m, memory: 64Mi}}")
    assert (pod.cpu_millis, pod.memory_bytes) == (250, 64 << 20)
    assert reg.decode_pod(reg.dumps(reg.encode_pod(pod))) == pod
    with pytest.raises(ManifestError) as e:
        parse("{tcpSocket: {port: 8080}}\n    resources: {limits: {memory: 1k}}")
    assert "resources.limits.memory" in e.value.field
