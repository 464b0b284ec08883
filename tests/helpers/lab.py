"""Lab test helpers: manifests written from YAML text, and connections made from a namespace."""

from __future__ import annotations

import textwrap

from gingham.kernel import netns
from gingham.lab.probe import probe


def manifest(tmp_path, body: str, name: str = "cluster.yaml") -> str:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return str(p)


def from_ns(path: str, host: str, port: int, proto: str = "TCP", timeout: float = 2.0) -> str | None:
    with netns.entered(path):
        return probe(host, port, proto, timeout)
