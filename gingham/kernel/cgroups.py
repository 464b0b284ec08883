"""A pod's cgroup: its CPU and memory limits, as kubelet (through runc) sets them.

`resources.limits.cpu` becomes a CFS quota (cpu.max / cpu.cfs_quota_us: the limit in
cores times a 100 ms period) and `resources.limits.memory` the memory limit (memory.max /
memory.limit_in_bytes), over which the kernel's OOM killer ends a process of the pod. On a
unified (v2) hierarchy one directory holds both; on v1 (this VM) the memory and cpu
hierarchies each get one. Groups live under `gingham/<group>/` so that a lab's are found
and removed together.
"""

from __future__ import annotations

import errno
import os
import time

ROOT = "/sys/fs/cgroup"
PERIOD_US = 100_000


def unified() -> bool:
    try:
        with open(os.path.join(ROOT, "cgroup.controllers")) as f:
            return {"cpu", "memory"} <= set(f.read().split())
    except OSError:
        return False


def _bases() -> dict[str, str]:
    """Controller -> the directory our groups go under."""
    if unified():
        return {"unified": os.path.join(ROOT, "gingham")}
    return {c: os.path.join(ROOT, c, "gingham") for c in ("memory", "cpu") if os.path.isdir(os.path.join(ROOT, c))}


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def paths(group: str, name: str) -> list[str]:
    return [os.path.join(base, group, name) for base in _bases().values()]


def create(group: str, name: str, cpu_millis: int, memory_bytes: int) -> list[str]:
    """The pod's cgroup directories with its limits written (0: no limit of that kind)."""
    made = []
    for kind, base in _bases().items():
        d = os.path.join(base, group, name)
        if kind == "unified":
            for parent in (base, os.path.join(base, group)):
                os.makedirs(parent, exist_ok=True)
                _write(os.path.join(parent, "cgroup.subtree_control"), "+cpu +memory")
        os.makedirs(d, exist_ok=True)
        made.append(d)
        if kind == "unified":
            if cpu_millis:
                _write(os.path.join(d, "cpu.max"), f"{cpu_millis * PERIOD_US // 1000} {PERIOD_US}")
            if memory_bytes:
                _write(os.path.join(d, "memory.max"), str(memory_bytes))
                _write(os.path.join(d, "memory.swap.max"), "0")
        elif kind == "cpu" and cpu_millis:
            _write(os.path.join(d, "cpu.cfs_period_us"), str(PERIOD_US))
            _write(os.path.join(d, "cpu.cfs_quota_us"), str(cpu_millis * PERIOD_US // 1000))
        elif kind == "memory" and memory_bytes:
            _write(os.path.join(d, "memory.limit_in_bytes"), str(memory_bytes))
            if os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes")):
                _write(os.path.join(d, "memory.memsw.limit_in_bytes"), str(memory_bytes))
    return made


def join(dirs: list[str], pid: int = 0) -> None:
    """Moves a process (0: this one) into the cgroup directories."""
    for d in dirs:
        _write(os.path.join(d, "cgroup.procs"), str(pid or os.getpid()))


def remove(dirs: list[str], wait: float = 2.0) -> None:
    """Removes the directories once their processes are gone (an exiting one may linger a moment)."""
    deadline = time.monotonic() + wait
    for d in dirs:
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    break
                time.sleep(0.05)


def remove_group(group: str) -> None:
    """Every pod cgroup of `group`, the group, and `gingham/` when nothing else is left in it
    (a lab's `down` leaves the hierarchy as it found it)."""
    for base in _bases().values():
        top = os.path.join(base, group)
        if os.path.isdir(top):
            remove([os.path.join(top, n) for n in os.listdir(top) if os.path.isdir(os.path.join(top, n))])
            remove([top])
        if os.path.isdir(base) and not any(os.path.isdir(os.path.join(base, n)) for n in os.listdir(base)):
            remove([base], wait=0)
