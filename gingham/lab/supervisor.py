"""The lab's workload supervisor: how a lab node's agent runs its pods' processes.

It implements agent/workloads.py's interface with the zygote of lab/workload.py (kept in a
module of its own so the zygote and every workload import nothing but the stdlib).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import gingham

from ..agent.procs import pid_alive
from ..kernel import cgroups
from ..model.objects import Pod


def cgroup_group(state_dir: str) -> str:
    """The cgroup group of one node's pods (kernel/cgroups.py), named for its state directory."""
    import hashlib
    return "lab-" + hashlib.sha256(os.path.abspath(state_dir).encode()).hexdigest()[:12]


class ZygoteWorkloads:
    """The lab's workloads for one node (agent/workloads.py's interface): one zygote process,
    started once with `python -I -S` and the package's own path (no site scan), forks each
    pod's workload into its namespace. The workloads' command line, inherited from the
    zygote, names this module: that is how a pid is recognised as a workload."""

    NEEDLE = "gingham.lab.workload"

    def __init__(self, state_dir: str) -> None:
        self.dir = state_dir
        self.zygote: subprocess.Popen[str] | None = None

    def _zygote(self) -> subprocess.Popen[str]:
        if self.zygote is None or self.zygote.poll() is not None:
            root = gingham.source_root()
            log = open(os.path.join(self.dir, "workloads.log"), "a")
            self.zygote = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {root!r}); "
                 "from gingham.lab.workload import zygote; zygote()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
            log.close()
        return self.zygote

    def _ready_file(self, pod: Pod) -> str:
        d = os.path.join(self.dir, "ready")
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, f"{pod.namespace}.{pod.name}")

    def start(self, netns_path: str, pod: Pod) -> int:
        """Forks the pod's workload into its namespace, and into its cgroup when it has limits
        (resources.limits: a CFS quota and a memory limit, as runc sets them)."""
        group: list[str] = []
        if pod.cpu_millis or pod.memory_bytes:
            group = cgroups.create(cgroup_group(self.dir), f"{pod.namespace}.{pod.name}", pod.cpu_millis,
                                   pod.memory_bytes)
        if not pod.ports:
            return 0
        ready = self._ready_file(pod)
        if os.path.exists(ready):
            os.unlink(ready)
        args = ["--name", pod.name, "--namespace", pod.namespace, "--ready", ready]
        for p in pod.ports:
            if p.protocol in ("TCP", "UDP", "SCTP"):
                args += [f"--{p.protocol.lower()}", str(p.port)]
        probe = pod.readiness
        if probe is not None and probe.action == "httpGet" and isinstance(probe.port, int) \
                and probe.port not in {p.port for p in pod.ports if p.protocol == "TCP"}:
            args += ["--http", str(probe.port)]  # a health port of its own, served as HTTP
        z = self._zygote()
        assert z.stdin is not None and z.stdout is not None
        z.stdin.write(json.dumps({"netns": netns_path, "log": os.path.join(self.dir, "workloads.log"),
                                  "args": args, "cgroup": group}) + "\n")
        z.stdin.flush()
        return int(z.stdout.readline())

    def ready(self, pod: Pod) -> bool:
        return not pod.ports or os.path.exists(self._ready_file(pod))

    def alive(self, pid: int) -> bool:
        return bool(pid) and pid_alive(pid, self.NEEDLE)

    def stop(self, pid: int, pod: Pod) -> None:
        if pid and pid_alive(pid, self.NEEDLE):
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not pid_alive(pid, self.NEEDLE):
                    break
                time.sleep(0.02)
        try:
            os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass
        if os.path.exists(self._ready_file(pod)):
            os.unlink(self._ready_file(pod))
        cgroups.remove(cgroups.paths(cgroup_group(self.dir), f"{pod.namespace}.{pod.name}"))

    def close(self) -> None:
        if self.zygote is not None and self.zygote.stdin is not None:
            self.zygote.stdin.close()  # it ends at the end of its input; the workloads stay
            self.zygote.wait(5)
