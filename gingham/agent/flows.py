"""Flow records: every connection a node's pods make or take, and every packet NetworkPolicy drops.

A thread of the agent reads conntrack's events (kernel/ctevents.py) and the NetworkPolicy
deny log (kernel/nflog.py; netpol/compile.py ends each isolated pod's chain with
`log prefix "gingham-np <I|E> <ns>/<pod>" group 100 drop`). Each event becomes a record in
the agent's own words: source and destination as pods (namespace, name, labels, node), a
node, or "external"; the Service when the destination was one (its address before DNAT);
the verdict; and for a denied packet which policies isolate the pod and that no rule of them
allows it, as `netpol explain` says it. A connection has a record when it starts and when it
ends (TCP: when conntrack sees it close; others: when the entry goes), the end with its bytes,
packets and duration from conntrack's accounting.

One node records a connection once in the cluster: the node of its source pod, or, for a
client that is not a pod, the node that DNATs it or holds the destination pod (a
masqueraded copy arriving from another node is skipped). Records go to a bounded ring in
memory and to `flows.jsonl` in the agent's directory, rotated at `MAX_FILE` bytes into
`flows.jsonl.1`, so neither grows without bound; `gingham lab flows` reads the files.
"""

from __future__ import annotations

import collections
import ipaddress
import os
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, TextIO

from ..fastjson import compact
from ..kernel.conntrack import Tuple
from ..kernel.ctevents import (NF_NETLINK_CONNTRACK_DESTROY, NF_NETLINK_CONNTRACK_NEW, NF_NETLINK_CONNTRACK_UPDATE,
                               ConntrackEvents, CtEvent, Lookup, Prefix, enable_accounting, prefix, within)
from ..kernel import nft
from ..kernel.nflog import Logged, NflogReader
from ..kernel.nftables import BaseChain, Transaction
from .metrics import AgentMetrics

NFLOG_GROUP = 100
PREFIX = "gingham-np"
MAX_FILE = int(os.environ.get("GINGHAM_FLOW_FILE_BYTES", 8 << 20))  # the tests make it small
RING = 10_000
PROTOCOLS = {6: "TCP", 17: "UDP", 132: "SCTP", 1: "ICMP"}
TCP_CLOSING = {"TIME_WAIT", "CLOSE"}
EVENTS_TABLE = "gingham-flows"
ENDED_KEPT = 4096
BATCH = 0.02  # seconds events gather between reads: a wakeup per batch, not per event (it costs more than one)


@dataclass
class View:
    """What the recorder needs of the cluster, replaced whole by the agent after each pass."""
    node: str = ""
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)       # ip -> {namespace, name, labels, node}
    node_ips: dict[str, str] = field(default_factory=dict)              # ip -> node name
    services: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # (ip, port) -> {namespace, name}
    node_ports: dict[int, dict[str, Any]] = field(default_factory=dict)  # nodePort -> Service
    isolating: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (pod key, I|E) -> policies
    others: tuple[Prefix, ...] = ()  # other nodes' pod CIDRs and addresses: connections they record
    own: tuple[Prefix, ...] = ()     # this node's addresses


def _endpoint(view: View, ip: str, port: int) -> dict[str, Any]:
    pod = view.pods.get(ip)
    if pod is not None:
        return {"ip": ip, "port": port, "kind": "pod", **pod}
    if ip in view.node_ips:
        return {"ip": ip, "port": port, "kind": "node", "node": view.node_ips[ip]}
    return {"ip": ip, "port": port, "kind": "external"}


def conn_record(view: View, ev: CtEvent, ended: bool) -> dict[str, Any] | None:
    """A connection's record, or None when another node records it (or it is no pod's)."""
    o, r = ev.orig, ev.reply
    src, dst = _endpoint(view, o.src, o.sport), _endpoint(view, r.src, r.sport)
    here = view.node
    if src["kind"] == "pod":
        if src["node"] != here:
            return None
    elif src["kind"] == "node" and src["node"] != here:
        return None  # masqueraded by another node, which recorded it
    elif not (dst.get("node") == here and dst["kind"] == "pod") and not ev.dnat:
        return None
    if src["kind"] != "pod" and dst["kind"] != "pod":
        return None  # the node's own traffic (etcd, DNS upstream...): not a pod's flow
    rec: dict[str, Any] = {"time": time.time(), "node": here, "type": "end" if ended else "start",
                           "verdict": "forwarded", "protocol": PROTOCOLS.get(o.proto, str(o.proto)),
                           "source": src, "destination": dst}
    if ev.dnat:
        svc = view.services.get((o.dst, o.dport)) or view.node_ports.get(o.dport)
        rec["service"] = {"ip": o.dst, "port": o.dport, **(svc or {})}
    if ended:
        rec.update(packets=sum(ev.packets), bytes=sum(ev.bytes),
                   duration=round((ev.stop_ns - ev.start_ns) / 1e9, 6) if ev.stop_ns and ev.start_ns else None)
    return rec


def deny_record(view: View, pkt: Logged) -> dict[str, Any] | None:
    if not pkt.prefix.startswith(PREFIX + " "):
        return None
    _, direction, pod = (pkt.prefix.split(" ") + ["", ""])[:3]
    src, dst = _endpoint(view, pkt.src, pkt.sport), _endpoint(view, pkt.dst, pkt.dport)
    policies = view.isolating.get((pod, direction), [])
    way = "ingress" if direction == "I" else "egress"
    local = src if direction == "E" else dst
    pod = f"{local['namespace']}/{local['name']}" if local["kind"] == "pod" else pod
    return {"time": pkt.time or time.time(), "node": view.node, "type": "denied", "verdict": "dropped",
            "protocol": PROTOCOLS.get(pkt.proto, str(pkt.proto)), "source": src, "destination": dst,
            "direction": way, "bytes": pkt.length, "packets": 1,
            "policy": {"isolatedBy": policies,
                       "reason": f"{pod} is isolated for {way} by {', '.join(policies) or 'a policy'} "
                                 "and no rule allows it"}}


class FlowRecorder:
    def __init__(self, state_dir: str, metrics: AgentMetrics | None = None) -> None:
        self.metrics = metrics
        self.path = os.path.join(state_dir, "flows.jsonl")
        self.view = View()
        self.ring: collections.deque[str] = collections.deque(maxlen=RING)  # the last records, as written
        # conntrack ids whose end was recorded, the last ENDED_KEPT of them (a closed TCP connection
        # may report TIME_WAIT, then CLOSE; its destroy is dropped before it gets here)
        self.ended: dict[int, None] = {}
        self.quiet_ports: set[int] = set()  # the pinger's local ports (pinger.py), its probes not recorded
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.programmed: tuple[Prefix, ...] | None = None  # the `others` the event masks were made for
        self.out: TextIO | None = None
        self.children: dict[tuple[Any, tuple[str, ...]], Any] = {}  # (metric, labels) -> its child
        self.pending: dict[tuple[Any, tuple[str, ...]], float] = {}  # (metric, labels) -> to add
        self.written = 0  # characters in the current file (records are ASCII: the encoder escapes the rest)

    def start(self) -> None:
        enable_accounting()
        self.ct = ConntrackEvents(NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE | NF_NETLINK_CONNTRACK_DESTROY)
        self.log = NflogReader(NFLOG_GROUP)
        self.lookup = Lookup()
        self.thread = threading.Thread(target=self._run, name="flows", daemon=True)
        self.thread.start()

    def program(self) -> None:
        """The kernel's event masks for the current view (`event_masks`), rewritten when the
        connections other nodes record change; nothing when the recorder is not running."""
        if self.thread is not None and self.view.others is not self.programmed:
            nft.run(event_masks(self.view.others, self.view.own))
            self.programmed = self.view.others

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(2)
            self.ct.close()
            self.log.close()
            self.lookup.close()

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.ct.skip(self.view.others)  # the kernel drops them (a new filter when the view changed)
            ready, _, _ = select.select([self.ct, self.log], [], [], 0.5)
            try:
                for src in ready:
                    if src is self.ct:
                        closed = [rec for rec in map(self._conn, self.ct.read()) if rec is not None]
                        self._closed(closed)
                    else:
                        for pkt in self.log.read():
                            rec = deny_record(self.view, pkt)
                            if rec is not None:
                                self._emit(rec)
            except Exception as e:  # noqa: BLE001 - a record lost is better than a recorder gone
                print(f"flows: {e!r}", file=sys.stderr, flush=True)
            if self.out is not None:
                self.out.flush()  # a batch, one write: `lab flows --follow` sees it within a wakeup
            if self.metrics is not None:
                self._publish()
                for name, reader in (("conntrack", self.ct), ("nflog", self.log)):
                    if reader.lost:
                        self.metrics.flows_lost.labels(name).inc(reader.lost)
                        reader.lost = 0
            self.stopping.wait(BATCH)

    def _conn(self, ev: CtEvent) -> tuple[dict[str, Any], Tuple] | None:
        """A start for a new entry; an end when TCP closes (the entry then lingers in TIME_WAIT)
        or, for the rest, when the entry goes. A TCP close is returned instead (an update carries
        no counters: `_closed` reads them from the entry, many in one go)."""
        if ev.kind == "new":
            # the kernel may give a new connection the id of an ended one (the same tuple again,
            # its entry's memory reused): the id is this one's now
            self.ended.pop(ev.id, None)
        elif ev.kind == "update":
            if ev.tcp_state not in TCP_CLOSING or ev.id in self.ended:
                return None
            self.ended[ev.id] = None
            if len(self.ended) > ENDED_KEPT:
                del self.ended[next(iter(self.ended))]
        elif ev.kind == "destroy" and ev.tcp_state in TCP_CLOSING:
            return None  # recorded at its close
        if ev.orig.sport in self.quiet_ports and ev.orig.src in self.view.node_ips:
            return None  # the agent's own round-trip probes (pinger.py)
        rec = conn_record(self.view, ev, ev.kind != "new")
        if rec is None:
            return None  # another node's to record
        if ev.kind == "update":
            return rec, ev.orig
        self._emit(rec)
        return None

    def _closed(self, closed: list[tuple[dict[str, Any], Tuple]]) -> None:
        if not closed:
            return
        now_ns = time.time_ns()
        for (rec, _), now in zip(closed, self.lookup.counters([orig for _, orig in closed])):
            if now is not None:
                rec.update(packets=now.packets, bytes=now.bytes,
                           duration=round((now_ns - now.start_ns) / 1e9, 6) if now.start_ns else None)
            self._emit(rec)

    def _count(self, metric: Any, labels: tuple[str, ...], n: float = 1) -> None:
        """Adds to a metric, applied once per batch (`_publish`): prometheus_client's labels() and
        inc() (a lock each) cost more than the record."""
        key = (metric, labels)
        self.pending[key] = self.pending.get(key, 0) + n

    def _publish(self) -> None:
        for (metric, labels), n in self.pending.items():
            child = self.children.get((metric, labels))
            if child is None:
                child = self.children[(metric, labels)] = metric.labels(*labels)
            child.inc(n)
        self.pending.clear()

    def _emit(self, rec: dict[str, Any]) -> None:
        m = self.metrics
        if m is not None:
            self._count(m.flows, (rec["type"], rec["verdict"], rec["protocol"]))
            if rec["type"] == "denied":
                for p in rec["policy"]["isolatedBy"] or ["(none)"]:
                    self._count(m.policy_drops, (p, rec["direction"], "no rule allows it"))
            elif rec["type"] == "end":
                for side, way in (("source", "sent"), ("destination", "received")):
                    s = rec[side]
                    if s["kind"] == "pod" and s["node"] == rec["node"]:
                        self._count(m.pod_bytes, (s["namespace"], s["name"], way), rec["bytes"] or 0)
                        self._count(m.pod_packets, (s["namespace"], s["name"], way), rec["packets"] or 0)
        line = compact(rec) + "\n"
        self.ring.append(line)
        if self.out is None:
            self.out = open(self.path, "a")
            self.written = os.path.getsize(self.path)
        self.out.write(line)
        self.written += len(line)  # counted here: a text file's tell() costs more than the record
        if self.written > MAX_FILE:
            self.out.close()
            os.replace(self.path, self.path + ".1")
            self.out, self.written = open(self.path, "a"), 0


def _cidr(p: Prefix) -> str:
    return f"{ipaddress.IPv4Address(p[0])}/{bin(p[1]).count('1')}"


def event_masks(others: Sequence[Prefix], own: Sequence[Prefix] = ()) -> Transaction:
    """Which conntrack events the kernel builds at all (`ct event set`, on a connection's first
    packet), by `conn_record`'s rules: none for a connection another node records (its source is
    in `others`) or that is no pod's (from this node's own addresses, `own`, to another node or
    its pods: VXLAN's packets, etcd, the pinger); for the rest a new entry, TCP state changes (the
    close among them) and the end, not the status and reply changes between. A node then makes
    one or two event messages per connection it records and none for the others; the socket
    filter (`ctevents.event_filter`) drops the state changes that are not a close and whatever
    started before this table."""
    tx = (Transaction("ip", EVENTS_TABLE).replace_table()
          .add_set("others", "type ipv4_addr; flags interval;").add_elements("others", [_cidr(p) for p in others])
          .add_set("own", "type ipv4_addr; flags interval;").add_elements("own", [_cidr(p) for p in own]))
    for chain, hook in (("prerouting", "prerouting"), ("output", "output")):
        # after conntrack made the entry (-200), before NAT (-100) and its first event (at confirm)
        tx.add_chain(chain, BaseChain(chain, "filter", hook, -150))
        tx.add_rules(chain, ["ct state new ip saddr @others ct event set 0x0 accept",
                             "ct state new ip saddr @own ip daddr @others ct event set 0x0 accept",
                             "ct state new ct event set new,protoinfo,destroy"])
    return tx


def build_view(node: str, cache: Any, services: Any, world: Any, old: View, changed: set[str]) -> View:
    """The recorder's view after a pass; the parts whose inputs did not change are kept from `old`
    (`changed`: the kinds of change the pass saw; "all" for a full pass)."""
    from ..netpol.compile import deny_id
    from ..netpol.evaluate import selecting
    v = View(node)
    everything = "all" in changed
    if everything or changed & {"pod", "podstatus", "namespace"}:
        for key, st in cache.pod_status.items():
            pod = cache.pods.get(key)
            if pod is not None and st.ip:
                v.pods[st.ip] = {"namespace": pod.namespace, "name": pod.name, "labels": dict(pod.labels),
                                 "node": pod.node_name}
    else:
        v.pods = old.pods
    v.node_ips = {n.ip: name for name, n in cache.nodes.items()}
    for name, n in cache.nodes.items():  # a node's own address on the overlay: its VTEP's, .0 of its pod CIDR
        if n.pod_cidr:
            v.node_ips.setdefault(str(ipaddress.ip_network(n.pod_cidr).network_address), name)
    # conn_record's first rule, as prefixes the kernel checks before anything wakes up: a connection
    # from another node's pod or from another node is that node's to record
    if everything or v.pods is not old.pods or v.node_ips != old.node_ips:
        cidrs = sorted(prefix(n.pod_cidr) for name, n in cache.nodes.items() if name != node and n.pod_cidr)
        theirs = {ip for ip, info in v.pods.items() if info["node"] != node} | \
            {ip for ip, name in v.node_ips.items() if name != node}
        strays = {ip for ip in theirs if not within(socket.inet_aton(ip), cidrs)}  # outside their node's CIDR
        v.others = tuple(cidrs + sorted(prefix(ip) for ip in strays))
        v.own = tuple(sorted(prefix(ip) for ip, name in v.node_ips.items() if name == node))
    else:
        v.others, v.own = old.others, old.own
    if everything or changed & {"service", "cluster"}:
        for s in services.values():
            ref = {"namespace": s.namespace, "name": s.name}
            for ip in [s.cluster_ip, s.load_balancer_ip, *s.external_ips]:
                if ip and ip != "None":
                    for p in s.ports:
                        v.services[(ip, p.port)] = ref
            for p in s.ports:
                if p.node_port:
                    v.node_ports[p.node_port] = ref
    else:
        v.services, v.node_ports = old.services, old.node_ports
    if world is not None:
        for pod in world.pods:
            if pod.node == node:
                for ingress, d in ((True, "I"), (False, "E")):
                    pols = selecting(world, pod, ingress)
                    if pols:
                        v.isolating[(deny_id(pod.key), d)] = [f"{p.namespace}/{p.name}" for p in pols]
                        v.isolating[(pod.key, d)] = v.isolating[(deny_id(pod.key), d)]
    else:
        v.isolating = old.isolating
    return v
