"""`gingham lab top`: the cluster network at a glance, live, like `top` for the pods' traffic.

Every `--interval` seconds it scrapes each node's agent (`:10249`) and DNS server (`:9153`)
from inside the node's namespace, and reads the flow records the nodes wrote meanwhile. A
frame shows what happened between two scrapes (rates, not totals since start): per node the
flows started per second by verdict, policy drops, DNS queries and SERVFAILs, the conntrack
table's fill, the network programming latency (the p99 of the changes programmed in the
interval, from the buckets as Prometheus' histogram_quantile reads them) and the round trip
to the other nodes; then the top talkers (bytes of the connections that ended, by source and
destination) and the drops by policy. It needs no Prometheus: `lab up --monitoring` is for
history, this is for now. `--once` prints one frame after one interval and exits.

`scrape` and `flows_since` read; `frame` is pure (two scrapes and the records in between);
`render` draws a frame with rich.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .flows import _name, files

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Scrape:
    """One node's metrics at one time (an empty `samples` when its agent did not answer)."""
    node: str
    time: float
    samples: Samples = field(default_factory=dict)
    up: bool = False


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def scrape(lab: Any) -> list[Scrape]:
    """Every node's agent and DNS metrics, fetched inside the node's namespace."""
    from ..kernel import netns
    out = []
    for n in lab.nodes():
        sc = Scrape(n["name"], time.time())
        try:
            with netns.entered(lab.target_netns(f"node/{n['name']}")):
                for port in (10249, 9153):
                    with urllib.request.urlopen(f"http://{n['ip']}:{port}/metrics", timeout=1) as r:
                        sc.samples.update(parse(r.read().decode()))
            sc.up = True
        except OSError:
            pass
        out.append(sc)
    return out


def flows_since(lab_dir: str, since: float, until: float) -> list[dict[str, Any]]:
    """The records with a time in (since, until], from the current files' ends (a frame's
    worth, not the whole history)."""
    out = []
    for path in files(lab_dir):
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - (4 << 20)))
            for line in f.read().decode(errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by the seek, or being written
                if since < rec.get("time", 0) <= until:
                    out.append(rec)
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (n, ls), v in samples.items():
        if n == name:
            out[dict(ls).get(label, "")] += v
    return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile over cumulative bucket counts (upper bound -> count); None if empty."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank, prev_le, prev_n = q * buckets[bounds[-1]], 0.0, 0.0
    for le in bounds:
        n = buckets[le]
        if n >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_n) / (n - prev_n) if n > prev_n else 1.0)
        prev_le, prev_n = le, n
    return prev_le


@dataclass
class Frame:
    seconds: float
    nodes: list[dict[str, Any]]
    talkers: list[tuple[str, str, int, int]]  # source, destination, bytes, connections
    drops: list[tuple[str, float]]             # policy, drops per second


def frame(before: list[Scrape], after: list[Scrape], records: list[dict[str, Any]], top: int = 8) -> Frame:
    """What happened between two scrapes of every node, and the records written meanwhile."""
    was = {s.node: s for s in before}
    rows: list[dict[str, Any]] = []
    drops: dict[str, float] = defaultdict(float)
    seconds = 0.0
    for s in after:
        b = was.get(s.node)
        if b is None or not (s.up and b.up):
            rows.append({"node": s.node, "up": s.up})
            continue
        dt = max(s.time - b.time, 1e-6)
        seconds = max(seconds, dt)

        def rate(name: str, **labels: str) -> float:
            return max(0.0, total(s.samples, name, **labels) - total(b.samples, name, **labels)) / dt  # noqa: B023
        buckets = {float(le): total(s.samples, "gingham_network_programming_duration_seconds_bucket", le=le) -
                   total(b.samples, "gingham_network_programming_duration_seconds_bucket", le=le)
                   for le in by_label(s.samples, "gingham_network_programming_duration_seconds_bucket", "le")}
        rtt_n = rate("gingham_peer_rtt_seconds_count", kind="node")
        entries, size = total(s.samples, "gingham_conntrack_entries"), total(s.samples, "gingham_conntrack_max")
        rows.append({"node": s.node, "up": True,
                     "forwarded": rate("gingham_flows_total", type="start", verdict="forwarded"),
                     "dropped": rate("gingham_flows_total", type="denied"),
                     "dns": rate("gingham_dns_requests_total"),
                     "servfail": rate("gingham_dns_requests_total", rcode="SERVFAIL"),
                     "conntrack": entries / size if size else 0.0,
                     "programming_p99": quantile(0.99, buckets),
                     "rtt": rate("gingham_peer_rtt_seconds_sum", kind="node") / rtt_n if rtt_n else None})
        now, then = by_label(s.samples, "gingham_policy_drops_total", "policy"), \
            by_label(b.samples, "gingham_policy_drops_total", "policy")
        for policy, n in now.items():
            if n > then.get(policy, 0):
                drops[policy] += (n - then.get(policy, 0)) / dt
    talk: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for rec in records:
        if rec.get("type") == "end":
            t = talk[(_name(rec["source"]), _name(rec["destination"]))]
            t[0] += rec.get("bytes") or 0
            t[1] += 1
    talkers = sorted(((s, d, b, n) for (s, d), (b, n) in talk.items()), key=lambda t: (-t[2], t[0], t[1]))[:top]
    return Frame(seconds, rows, talkers, sorted(drops.items(), key=lambda d: (-d[1], d[0]))[:top])


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f} ms"


def render(f: Frame) -> Any:
    from rich.console import Group
    from rich.table import Table
    nodes = Table(title=f"nodes (the last {f.seconds:.1f} s)", title_justify="left")
    for col in ("NODE", "FLOWS/S", "DROPPED/S", "DNS/S", "SERVFAIL/S", "CONNTRACK", "PROGRAMMING P99", "RTT"):
        nodes.add_column(col, justify="left" if col == "NODE" else "right")
    for r in f.nodes:
        if not r["up"]:
            nodes.add_row(r["node"], "[red]agent not answering[/red]", *[""] * 6)
            continue
        nodes.add_row(r["node"], f"{r['forwarded']:.1f}", f"{r['dropped']:.1f}", f"{r['dns']:.1f}",
                      f"{r['servfail']:.1f}", f"{r['conntrack']:.1%}", _ms(r["programming_p99"]), _ms(r["rtt"]))
    talkers = Table(title="top talkers (connections that ended)", title_justify="left")
    for col in ("SOURCE", "DESTINATION", "BYTES", "CONNECTIONS"):
        talkers.add_column(col, justify="right" if col in ("BYTES", "CONNECTIONS") else "left")
    for src, dst, b, n in f.talkers:
        talkers.add_row(src, dst, str(b), str(n))
    drops = Table(title="drops by policy", title_justify="left")
    drops.add_column("POLICY")
    drops.add_column("DROPS/S", justify="right")
    for policy, per_s in f.drops:
        drops.add_row(policy, f"{per_s:.1f}")
    return Group(nodes, talkers, drops)


def cmd_top(a: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from .cli import _lab
    lab = _lab(a.name)
    lab.meta()
    before = scrape(lab)
    if a.once:
        time.sleep(a.interval)
        after = scrape(lab)
        Console(width=a.width).print(render(frame(before, after, flows_since(lab.dir, before[0].time, after[0].time))))
        return 0
    try:
        with Live(render(frame(before, before, [])), auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(a.interval)
                after = scrape(lab)
                live.update(render(frame(before, after, flows_since(lab.dir, before[0].time, after[0].time))),
                            refresh=True)
                before = after
    except KeyboardInterrupt:
        return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interval", type=float, default=2.0, help="seconds between frames (default 2)")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    p.add_argument("--width", type=int, default=None, help="columns (default: the terminal's)")
