"""How long the commands people type take, end to end, as a shell runs them.

A 2-node lab (examples/demo.yaml); each command is run N times as a subprocess, the way a
user or a script types it, and the median and the fastest are reported, beside Python's
own start (`python -c pass`) on the same machine: what is left is gingham's imports and
its work. Run: scripts/bench.sh cli [N] (default 20).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from gingham.lab.cluster import Lab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GINGHAM = [sys.executable, "-m", "gingham.cli"]


def timed(cmd: list[str], n: int) -> tuple[float, float]:
    """(median, fastest) seconds of `cmd` run to completion n times; it must succeed."""
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        ts.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return statistics.median(ts), min(ts)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    lab = Lab("clibench")
    lab.down()
    lab.up([os.path.join(ROOT, "examples", "demo.yaml")])
    try:
        rows = [
            ("python -c pass (Python alone)", [sys.executable, "-c", "pass"]),
            ("gingham --help", [*GINGHAM, "--help"]),
            ("gingham lab get pods", [*GINGHAM, "lab", "get", "pods", "--name", lab.name]),
            ("gingham lab get services", [*GINGHAM, "lab", "get", "services", "--name", lab.name]),
            ("gingham lab probe default/client shop/web-0 80",
             [*GINGHAM, "lab", "probe", "default/client", "shop/web-0", "80", "--name", lab.name]),
            ("gingham lab exec default/client -- true",
             [*GINGHAM, "lab", "exec", "default/client", "--name", lab.name, "--", "true"]),
            ("gingham lab apply -f examples/demo.yaml (nothing changes)",
             [*GINGHAM, "lab", "apply", "-f", os.path.join(ROOT, "examples", "demo.yaml"), "--name", lab.name]),
        ]
        print("| command | median | fastest |")
        print("|---|---|---|")
        for label, cmd in rows:
            med, low = timed(cmd, n)
            print(f"| `{label}` | {med * 1e3:.0f} ms | {low * 1e3:.0f} ms |", flush=True)
    finally:
        lab.down()


if __name__ == "__main__":
    main()
