"""kubelet's prober, readiness only: when a pod's readinessProbe runs, and what its results make
of the pod's Ready condition.

`ProbeTracker` is pure (times in, decisions out, tested by value): the first probe runs
`initialDelaySeconds` after the pod started, then every `periodSeconds`; Ready turns true
after `successThreshold` successes in a row and false after `failureThreshold` failures
in a row, and a pod is not ready until its probe has succeeded. `run_probe` does one
probe as kubelet does, from the node towards the pod's address (tcpSocket: a connection
within timeoutSeconds; httpGet: a GET answered 200-399) or inside the pod (exec: exit 0).
"""

from __future__ import annotations

import socket
import subprocess

from ..kernel import netns
from ..model.objects import Pod, Probe


class ProbeTracker:
    def __init__(self, probe: Probe, started: float) -> None:
        self.probe, self.started = probe, started
        self.next_run = started + probe.initial_delay
        self.successes = self.failures = 0
        self.ready = False

    def due(self, now: float) -> bool:
        return now >= self.next_run

    def record(self, ok: bool, now: float) -> bool:
        """One result; whether Ready changed."""
        before = self.ready
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.probe.success_threshold:
                self.ready = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= self.probe.failure_threshold:
                self.ready = False
        self.next_run = now + self.probe.period
        return self.ready != before


def port_number(probe: Probe, pod: Pod) -> int:
    """The probe's port: a number, or the container port of that name (0: no such port)."""
    if isinstance(probe.port, int):
        return probe.port
    return next((p.port for p in pod.ports if p.name == probe.port), 0)


def run_probe(probe: Probe, pod: Pod, ip: str, netns_path: str) -> bool:
    """One probe; True when it succeeds."""
    try:
        if probe.action == "exec":
            cmd = list(probe.command) if netns_path.startswith("/proc/") else \
                ["ip", "netns", "exec", netns_path.rsplit("/", 1)[-1], *probe.command]  # hostNetwork: right here
            r = subprocess.run(cmd, capture_output=True, timeout=probe.timeout)
            return r.returncode == 0
        port = port_number(probe, pod)
        if not port or not ip:
            return False
        with socket.create_connection((ip, port), timeout=probe.timeout) as s:
            if probe.action == "tcpSocket":
                return True
            s.sendall(f"GET {probe.path} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/1.31\r\n"
                      "Connection: close\r\n\r\n".encode())
            status = s.makefile("rb").readline(256).split()
            return len(status) >= 2 and status[0].startswith(b"HTTP/") and 200 <= int(status[1]) < 400
    except (OSError, ValueError, subprocess.TimeoutExpired, netns.NetnsNotFound):
        return False
