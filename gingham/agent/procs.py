"""Processes the agent and the lab start, recognised by their command line (a pid alone may be reused)."""

from __future__ import annotations


def pid_alive(pid: int, needle: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return needle.encode() in f.read()
    except OSError:
        return False
