"""Processes the agent and the lab start, recognised by their command line (a pid alone may be reused)."""

from __future__ import annotations


def pid_alive(pid: int, needle: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return needle.encode() in f.read()
    except OSError:
        return False


def pid_file(path: str, needle: str) -> int | None:
    """The pid a daemon wrote to `path`, if that process is still the daemon (`needle` in its
    command line); None otherwise."""
    try:
        with open(path) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid, needle) else None
