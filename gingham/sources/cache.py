"""A typed, indexed cache of the cluster, fed by list + watch (an informer, in client-go's words).

`Source` lists the datastore's prefix once, then watches from the next revision on a
thread of its own. That thread only reads: it queues what etcd sent. The cache is changed
on the caller's thread, in `Source.wait()`, which applies everything queued and returns
what changed (kind -> keys). Nothing downstream needs to have seen every event: after a
lost watch the source watches again from its revision, and after a compaction it lists
again and turns the difference into changes, so a restarted or lagging agent converges.

Objects are decoded once, at ingest, into model types (Services and NetworkPolicies parsed
and validated too). A key holding something invalid is logged with why, kept out of the
cache (a previous valid value of it is removed), and everything else keeps being served.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..model import registry as reg
from ..model.objects import Cluster, ClusterState, Namespace, Object, Pod
from .etcd import Compacted, Etcd, EtcdError, Event

if TYPE_CHECKING:  # parsed where a Service or policy arrives: `lab get pods` never loads their parsers
    from ..model.netpol import NetworkPolicy
    from ..model.services import Service

Changes = dict[str, set[str]]  # kind ("pod", "service", "podstatus", ...) -> keys that changed


@dataclass
class Cache:
    """The cluster as typed values; `revision` is the store revision it reflects."""

    cluster: Cluster | None = None
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    nodes: dict[str, reg.NodeInfo] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    pod_status: dict[str, reg.PodStatus] = field(default_factory=dict)
    objects: dict[str, Object] = field(default_factory=dict)          # "Kind/ns/name"
    services: dict[str, Service] = field(default_factory=dict)        # "ns/name"
    policies: dict[str, NetworkPolicy] = field(default_factory=dict)  # "ns/name"
    leases: set[str] = field(default_factory=set)
    node_status: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)
    _object_keys: dict[str, str] = field(default_factory=dict)  # etcd key -> "Kind/ns/name"
    invalid: dict[str, str] = field(default_factory=dict)
    revision: int = 0
    spec_revision: int = 0    # the last `lab up/apply/delete`
    status_revision: int = 0  # the last pod status or lease written (what endpoints depend on)
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)

    def state(self) -> ClusterState:
        """A ClusterState over the cache's own dicts (no copy: read it, do not keep it)."""
        return ClusterState(self.cluster or Cluster(), self.namespaces, self.pods, self.objects)

    def node_dicts(self) -> dict[str, dict[str, str]]:
        return {n: info.as_dict() for n, info in self.nodes.items()}

    def apply(self, key: str, value: bytes | None, changes: Changes, revision: int = 0) -> None:
        """One key's new value (None: deleted) into the typed maps; what changed into `changes`."""
        if key == reg.REVISION:  # a write of the lab's: agents say they have seen it, even if nothing else changed
            self.spec_revision = max(self.spec_revision, revision)
            changes["revision"].add("")
            return
        if key.startswith((reg.POD_STATUS, reg.LEASES)):
            self.status_revision = max(self.status_revision, revision)
        if value is not None and self.raw.get(key) == value:
            return
        if value is None:
            self.raw.pop(key, None)
        else:
            self.raw[key] = value
        try:
            self._apply(key, value, changes)
            self.invalid.pop(key, None)
        except (ValueError, TypeError) as e:  # DecodeError, ServiceError and NetpolError among them
            self.invalid[key] = str(e)
            self.log(f"datastore: skipping {key}: {e}")
            if key in self.raw:
                self.raw[key] = b""  # a later valid value is applied; nothing invalid is served
                self._apply(key, None, changes)

    def _apply(self, key: str, value: bytes | None, changes: Changes) -> None:
        if key == reg.CLUSTER:
            self.cluster = reg.decode_cluster(value) if value is not None else None
            changes["cluster"].add("")
            for k in [k for k in self.objects if k.startswith("Service/")]:  # parsed against the service range
                o = self.objects[k]
                self._service(o, changes)
        elif key.startswith(reg.ENDPOINT_SLICES):  # the controller's output: kept raw, decoded by who reads it
            changes["endpointslice"].add(key[len(reg.ENDPOINT_SLICES):])
        elif key == reg.SLICE_LEADER:
            changes["leader"].add("")
        elif key.startswith(reg.LEASES):
            (self.leases.add if value is not None else self.leases.discard)(key[len(reg.LEASES):])
            changes["lease"].add(key[len(reg.LEASES):])
        elif (typed := next((t for t in _TYPED if key.startswith(t[0])), None)) is not None:
            prefix, kind, attr, decode = typed
            _put(getattr(self, attr), key[len(prefix):], None if value is None else decode(value))
            changes[kind].add(key[len(prefix):])
        elif key.startswith(reg.ROOT + "ranges/"):
            return
        else:
            if value is None:
                gone = self._object_keys.pop(key, None)
                if gone is None or gone not in self.objects:
                    return
                o = self.objects.pop(gone)
                if o.kind == "Service":
                    self.services.pop(f"{o.namespace}/{o.name}", None)
                    changes["service"].add(f"{o.namespace}/{o.name}")
                elif o.kind == "NetworkPolicy":
                    self.policies.pop(f"{o.namespace}/{o.name}", None)
                    changes["policy"].add(f"{o.namespace}/{o.name}")
                changes["object"].add(o.key)
                return
            o = reg.decode_object(key, value)
            if o.kind == "Service":
                self._service(o, changes)
            elif o.kind == "NetworkPolicy":
                from ..model.netpol import parse_policy
                self.policies[f"{o.namespace}/{o.name}"] = parse_policy(o.namespace, o.name, o.raw)
                changes["policy"].add(f"{o.namespace}/{o.name}")
            self.objects[o.key] = o
            self._object_keys[key] = o.key
            changes["object"].add(o.key)

    def _service(self, o: Object, changes: Changes) -> None:
        from ..model.services import parse_service
        if self.cluster is not None:
            self.services[f"{o.namespace}/{o.name}"] = parse_service(o.namespace, o.name, o.raw,
                                                                     self.cluster.service_cidr)
        changes["service"].add(f"{o.namespace}/{o.name}")

    def load(self, kvs: list[tuple[str, bytes, int]], revision: int, changes: Changes) -> None:
        """A full listing: keys that are gone are deleted, the rest applied (cluster first)."""
        listed = {k for k, _, _ in kvs}
        for key in [k for k in self.raw if k not in listed]:
            self.apply(key, None, changes)
        for key, value, mod in sorted(kvs, key=lambda kv: kv[0] != reg.CLUSTER):
            self.apply(key, value, changes, mod)
        self.revision = revision


# keys decoded into one of the cache's maps: (prefix, kind of change, the map, the decoder)
_TYPED: list[tuple[str, str, str, Callable[[bytes], Any]]] = [
    (reg.NAMESPACES, "namespace", "namespaces", reg.decode_namespace),
    (reg.NODES, "node", "nodes", reg.decode_node),
    (reg.NODE_STATUS, "nodestatus", "node_status", reg.document),
    (reg.POD_STATUS, "podstatus", "pod_status", reg.decode_pod_status),
    (reg.PODS, "pod", "pods", reg.decode_pod),
]


def merge(into: Changes, more: Changes) -> Changes:
    """`more`'s changed keys added to `into` (which is returned)."""
    for kind, keys in more.items():
        into.setdefault(kind, set()).update(keys)
    return into


def _put(d: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        d.pop(key, None)
    else:
        d[key] = value


class Source:
    """List + watch of one etcd prefix into a Cache; `wait()` hands over the changes."""

    def __init__(self, etcd: Etcd, cache: Cache | None = None, prefix: str = reg.ROOT) -> None:
        self.etcd, self.prefix = etcd, prefix
        self.cache = cache or Cache()
        self._q: queue.Queue[tuple[str, Any, int]] = queue.Queue()
        self._stop = threading.Event()
        self._watch: Any = None
        self._thread: threading.Thread | None = None
        self.relists = 0

    def start(self) -> Changes:
        """Lists (raises EtcdError when no member answers) and starts watching."""
        changes: Changes = defaultdict(set)
        self._load(self._list(), changes)
        self._thread = threading.Thread(target=self._run, name="etcd-watch", daemon=True)
        self._thread.start()
        return changes

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.close()
        if self._thread is not None:
            self._thread.join(2)

    def _list(self) -> tuple[list[tuple[str, bytes, int]], int]:
        kvs, rev = self.etcd.range(self.prefix)
        return [(kv.key, kv.value, kv.mod_revision) for kv in kvs], rev

    def _load(self, listing: tuple[list[tuple[str, bytes, int]], int], changes: Changes) -> None:
        kvs, rev = listing
        self.cache.load(kvs, rev, changes)
        self._next = rev + 1

    def _run(self) -> None:
        start = self._next
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._watch = w = self.etcd.watch(self.prefix, start)
                if self._stop.is_set():
                    w.close()
                for rev, events in w:
                    backoff = 0.1
                    self._q.put(("events", events, rev))
                    start = max(start, rev + 1, *(e.mod_revision + 1 for e in events))
            except Compacted:
                self.relists += 1
                try:
                    listing = self._list()
                except EtcdError:
                    continue
                self._q.put(("list", listing, listing[1]))
                start = listing[1] + 1
            except EtcdError:
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 1.0)
            except Exception as e:  # a bug here must not stop the node from ever hearing again
                print(f"datastore watch: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                if self._stop.wait(1):
                    return

    def wait(self, timeout: float) -> Changes:
        """Waits up to `timeout` for something to change; applies all that is queued; returns it."""
        changes: Changes = defaultdict(set)
        try:
            item = self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait()
        except queue.Empty:
            return changes
        while True:
            kind, payload, rev = item
            if kind == "list":
                self.cache.load(payload[0], payload[1], changes)
            else:
                events: list[Event] = payload
                for e in events:
                    self.cache.apply(e.key, e.value, changes, e.mod_revision)
                # a response's header may already be past its events (the next response brings the
                # rest): what the cache holds is up to its last event, or the header of an empty one
                done = max(e.mod_revision for e in events) if events else rev
                self.cache.revision = max(self.cache.revision, done)
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return changes

    def settle(self, quiet: float = 0.002, limit: float = 0.05) -> Changes:
        """What `wait` returns, plus whatever follows within `quiet` seconds (a burst of
        writes handled as one pass), for at most `limit` seconds."""
        changes: Changes = defaultdict(set)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            more = self.wait(quiet)
            if not more:
                break
            merge(changes, more)
        return changes
