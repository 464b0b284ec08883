"""Traffic control through the `tc` command (argv lists, JSON out), for token-bucket shaping."""

from __future__ import annotations

import subprocess

from .. import fastjson as json  # json's defaults without importing re (a plugin process pays for it)

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any


class TcError(Exception):
    pass


def _tc(*args: str, ok_missing: bool = False) -> str:
    r = subprocess.run(["tc", *args], capture_output=True, text=True)
    if r.returncode != 0:
        if ok_missing and ("No such" in r.stderr or "Cannot find" in r.stderr or "Invalid handle" in r.stderr):
            return ""
        raise TcError(f"tc {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def tbf(dev: str, rate_bits: int, burst_bits: int, latency_ms: int = 25) -> None:
    """Root token-bucket filter: `rate` bit/s, `burst` bits (tc takes bytes)."""
    _tc("qdisc", "replace", "dev", dev, "root", "handle", "1:", "tbf", "rate", f"{rate_bits}bit",
        "burst", str(max(burst_bits // 8, 1)), "latency", f"{latency_ms}ms")


def redirect_ingress(dev: str, to: str) -> None:
    """Mirrors every packet arriving on `dev` to the egress of `to` (an ifb)."""
    _tc("qdisc", "replace", "dev", dev, "handle", "ffff:", "ingress")
    _tc("filter", "replace", "dev", dev, "parent", "ffff:", "protocol", "all", "prio", "1", "u32",
        "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", to)


def qdiscs(dev: str) -> list[dict[str, Any]]:
    out = _tc("-j", "qdisc", "show", "dev", dev, ok_missing=True)
    return list(json.loads(out)) if out.strip() else []
