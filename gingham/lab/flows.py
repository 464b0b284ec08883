"""`gingham lab flows`: every node's flow records merged, filtered in the spirit of `hubble observe`.

The records are the agents' (agent/flows.py), read from each node's `flows.jsonl` (and the
rotated `flows.jsonl.1`). Filters combine with AND; `--pod` and `--label` match either side.
`--follow` keeps reading what the nodes write.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from typing import Any, Iterator


def _name(side: dict[str, Any]) -> str:
    if side.get("kind") == "pod":
        return f"{side['namespace']}/{side['name']}"
    if side.get("kind") == "node":
        return f"node/{side['node']}"
    return "external"


def _matches_pod(side: dict[str, Any], want: str) -> bool:
    return side.get("kind") == "pod" and (f"{side['namespace']}/{side['name']}" == want or
                                          ("/" not in want and side["name"] == want))


def parse_since(s: str) -> float:
    """`30s`, `5m`, `2h` or seconds: how far back."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        return float(s[:-1]) * units[s[-1]] if s and s[-1] in units else float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--since {s!r}: give seconds or a duration like 30s, 5m, 2h") from None


def keep(rec: dict[str, Any], a: argparse.Namespace, now: float) -> bool:
    src, dst = rec["source"], rec["destination"]
    if a.from_pod and not _matches_pod(src, a.from_pod):
        return False
    if a.to_pod and not _matches_pod(dst, a.to_pod):
        return False
    if a.pod and not (_matches_pod(src, a.pod) or _matches_pod(dst, a.pod)):
        return False
    if a.from_namespace and src.get("namespace") != a.from_namespace:
        return False
    if a.to_namespace and dst.get("namespace") != a.to_namespace:
        return False
    for label in a.label or []:
        k, _, v = label.partition("=")
        if not any(side.get("labels", {}).get(k) == v for side in (src, dst)):
            return False
    if a.verdict and rec["verdict"] != a.verdict:
        return False
    if a.port and a.port not in (dst.get("port"), rec.get("service", {}).get("port")):
        return False
    if a.protocol and rec["protocol"] != a.protocol.upper():
        return False
    if a.service:
        svc = rec.get("service") or {}
        if a.service not in (f"{svc.get('namespace')}/{svc.get('name')}", svc.get("name")):
            return False
    if a.node and rec["node"] != a.node:
        return False
    if a.since is not None and rec["time"] < now - a.since:
        return False
    return True


def files(lab_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(lab_dir, "nodes", "*", "flows.jsonl.1")) +
                  glob.glob(os.path.join(lab_dir, "nodes", "*", "flows.jsonl")))


def read_all(lab_dir: str) -> list[dict[str, Any]]:
    out = []
    for path in files(lab_dir):
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue  # a line being written
    return sorted(out, key=lambda r: r["time"])


def follow(lab_dir: str) -> Iterator[dict[str, Any]]:
    """Records written from now on, as the nodes write them."""
    offsets = {p: os.path.getsize(p) for p in glob.glob(os.path.join(lab_dir, "nodes", "*", "flows.jsonl"))}
    while True:
        batch = []
        for path in glob.glob(os.path.join(lab_dir, "nodes", "*", "flows.jsonl")):
            size = os.path.getsize(path)
            start = offsets.get(path, 0)
            if size < start:  # rotated
                start = 0
            with open(path) as f:
                f.seek(start)
                data = f.read()
            complete = data[:data.rfind("\n") + 1]
            offsets[path] = start + len(complete.encode())
            batch += [json.loads(line) for line in complete.splitlines() if line.strip()]
        yield from sorted(batch, key=lambda r: r["time"])
        time.sleep(0.2)


def row(rec: dict[str, Any]) -> dict[str, str]:
    svc = rec.get("service")
    src, dst = rec["source"], rec["destination"]
    if rec["type"] == "denied":
        detail = rec["policy"]["reason"]
    elif rec["type"] == "end":
        dur = rec.get("duration")
        detail = f"{rec.get('bytes', 0)} bytes, {rec.get('packets', 0)} packets" + (f", {dur:.3f}s" if dur else "")
    else:
        detail = "new"
    return {"time": time.strftime("%H:%M:%S", time.localtime(rec["time"])) + f".{int(rec['time'] * 1000) % 1000:03d}",
            "node": rec["node"], "source": f"{_name(src)}:{src.get('port', '')}",
            "destination": f"{_name(dst)}:{dst.get('port', '')}",
            "service": f"{svc.get('namespace', '')}/{svc.get('name', '')}" if svc and svc.get("name")
            else (f"{svc['ip']}:{svc['port']}" if svc else "-"),
            "protocol": rec["protocol"], "verdict": rec["verdict"], "detail": detail}


COLUMNS = ["time", "node", "source", "destination", "service", "protocol", "verdict", "detail"]


def cmd_flows(a: argparse.Namespace) -> int:
    from .cli import _lab, _print
    lab = _lab(a.name)
    lab.meta()
    now = time.time()
    recs = [r for r in read_all(lab.dir) if keep(r, a, now)]
    if a.last:
        recs = recs[-a.last:]
    out = a.output
    if out == "jsonl" or (a.follow and out == "json"):
        for r in recs:
            print(json.dumps(r))
    elif out == "json":
        print(json.dumps(recs, indent=2))
    else:
        _print(a, [row(r) for r in recs], COLUMNS)
    if a.follow:
        try:
            for r in follow(lab.dir):
                if keep(r, a, time.time()):
                    print(json.dumps(r) if out in ("json", "jsonl") else "  ".join(row(r).values()), flush=True)
        except KeyboardInterrupt:
            return 0
    sys.stdout.flush()
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-pod", help="NS/POD (or POD) the flows come from")
    p.add_argument("--to-pod", help="NS/POD (or POD) the flows go to")
    p.add_argument("--pod", help="NS/POD (or POD) on either side")
    p.add_argument("--from-namespace")
    p.add_argument("--to-namespace")
    p.add_argument("--label", action="append", help="KEY=VALUE of a pod on either side (repeatable: all must hold)")
    p.add_argument("--verdict", choices=["forwarded", "dropped"])
    p.add_argument("--port", type=int, help="the destination port, or the Service's")
    p.add_argument("--protocol", type=str.upper, choices=["TCP", "UDP", "SCTP", "ICMP"])
    p.add_argument("--service", help="NS/NAME (or NAME) of the Service the flows were sent to")
    p.add_argument("--node", help="the node that recorded them")
    p.add_argument("--since", type=parse_since, help="only the last 30s, 5m, 2h...")
    p.add_argument("--last", type=int, help="only the last N records")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
