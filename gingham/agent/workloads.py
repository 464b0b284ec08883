"""What the agent asks of whatever runs a pod's processes: a narrow interface, so the agent
never knows how (the lab's zygote, lab/workload.py; a container runtime on a real node)."""

from __future__ import annotations

from typing import Protocol

from ..model.objects import Pod


class Workloads(Protocol):
    def start(self, netns_path: str, pod: Pod) -> int:
        """Starts the pod's workload inside its namespace; its pid (0: the pod runs nothing)."""

    def ready(self, pod: Pod) -> bool:
        """The workload listens on its ports (what a readiness probe would say)."""

    def alive(self, pid: int) -> bool: ...

    def stop(self, pid: int, pod: Pod) -> None: ...

    def close(self) -> None:
        """The agent is stopping: the workloads keep running (an agent restart must not stop pods)."""
