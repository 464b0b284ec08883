"""Words of an HAProxy configuration, quoted so that nothing in a Kubernetes value is read as syntax."""

from __future__ import annotations


def quote(s: str) -> str:
    """A double-quoted HAProxy word: backslash, quote and `$` (environment expansion) escaped."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'
