"""The lab's side of the datastore: the API server's writes and kubectl's reads.

A write reads only what it needs (cluster, namespaces, nodes, pods, the allocation keys,
and the objects its manifest names), never every Service, and commits in one etcd
transaction that holds only if none of what it read has changed since (compare-and-swap
on each key's revision): two writers at once cannot hand out one ClusterIP twice; the
loser reads again and retries. Each commit rewrites the revision marker, so every
`lab up/apply/delete` is one revision.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..model import registry as reg
from ..sources.cache import Cache, Changes
from ..sources.etcd import KV, Etcd, cmp_mod, kvs_of, op_delete, op_get, op_put

if TYPE_CHECKING:  # the allocator is imported by the writes that need it, not by every read
    from ..services.allocate import Ranges

BASE = (reg.CLUSTER, reg.NAMESPACES, reg.NODES, reg.PODS, reg.ROOT + "ranges/")
STATUS = (reg.CLUSTER, reg.REVISION, reg.NODES, reg.PODS, reg.POD_STATUS, reg.NODE_STATUS, reg.LEASES)
SERVICES = STATUS + (reg.SERVICES,)  # what Services and their endpoints are derived from


@dataclass
class Snapshot:
    """What a write read: a partial cache, the allocation Ranges, and every key's revision then."""

    cache: Cache
    ranges: Ranges
    revisions: dict[str, int] = field(default_factory=dict)  # key -> mod revision (0: absent)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # object key -> its document


class ClusterStore:
    def __init__(self, etcd: Etcd) -> None:
        self.etcd = etcd

    def _read(self, prefixes: tuple[str, ...]) -> tuple[list[KV], int]:
        """Every key under the prefixes (or equal to a prefix without a trailing /), at one revision."""
        _, rev, responses = self.etcd.txn([], [op_get(p) for p in prefixes])
        return [kv for r in responses for kv in kvs_of(r)], rev

    def read(self, prefixes: tuple[str, ...] | None = None) -> Cache:
        """A typed cache of everything, or of the keys under `prefixes`."""
        return _cache(*(self.etcd.range(reg.ROOT) if prefixes is None else self._read(prefixes)))

    def status(self) -> Cache:
        """What `lab wait` looks at: pods, their statuses, the nodes' statuses and leases."""
        return self.read(STATUS)

    def snapshot(self) -> Snapshot:
        """What every write needs: BASE and the allocation Ranges, at one revision."""
        from ..services.allocate import Bitmap, Ranges
        kvs, rev = self._read(BASE)
        cache = _cache(kvs, rev)
        got = {kv.key: kv for kv in kvs}
        ranges = Ranges.empty(cache.cluster) if cache.cluster is not None else Ranges()
        if reg.RANGE_SERVICE_IPS in got:
            ranges.cidr, data = reg.decode_bitmap(got[reg.RANGE_SERVICE_IPS].value)
            ranges.ips = Bitmap(ipaddress.ip_network(ranges.cidr).num_addresses, data)
        if reg.RANGE_NODE_PORTS in got:
            ranges.ports = Bitmap(ranges.ports.size, reg.decode_bitmap(got[reg.RANGE_NODE_PORTS].value)[1])
        if reg.RANGE_LB_IPS in got:
            ranges.lbs = reg.decode_holders(got[reg.RANGE_LB_IPS].value)
        revisions = {kv.key: kv.mod_revision for kv in kvs}
        for k in (reg.RANGE_SERVICE_IPS, reg.RANGE_NODE_PORTS, reg.RANGE_LB_IPS):
            revisions.setdefault(k, 0)  # "still absent" is part of what was read
        return Snapshot(cache, ranges, revisions)

    def fetch(self, snap: Snapshot, object_keys: list[str]) -> None:
        """Adds the named objects' current versions (or their absence) to what `snap` read."""
        if not object_keys:
            return
        _, _, responses = self.etcd.txn([], [op_get(k) for k in object_keys])
        got = {kv.key: kv for r in responses for kv in kvs_of(r)}
        changes: Changes = defaultdict(set)
        for kv in got.values():
            snap.cache.apply(kv.key, kv.value, changes, kv.mod_revision)
        for k in object_keys:
            snap.revisions[k] = got[k].mod_revision if k in got else 0
            if k in snap.cache.raw and k not in snap.cache.invalid:  # garbage in a key is overwritten, not kept
                snap.objects[k] = reg.document(got[k].value)

    def commit(self, snap: Snapshot, want: dict[str, bytes], ranges: Ranges) -> tuple[bool, int]:
        """Writes `want` (every spec key the write covers) against what `snap` read: puts what
        differs, deletes what it read and no longer wants. False when something it read changed."""
        have = snap.cache.raw
        ops = [op_put(k, v) for k, v in want.items() if have.get(k) != v]
        ops += [op_delete(k) for k in have if reg.is_spec(k) and k not in want]
        for key, value in ((reg.RANGE_SERVICE_IPS, reg.encode_bitmap(ranges.cidr, bytes(ranges.ips.data))),
                           (reg.RANGE_NODE_PORTS, reg.encode_bitmap("30000-32767", bytes(ranges.ports.data))),
                           (reg.RANGE_LB_IPS, reg.encode_holders(ranges.lbs))):
            if have.get(key) != value:
                ops.append(op_put(key, value))
        ops.append(op_put(reg.REVISION, b"{}"))
        ok, rev, _ = self.etcd.txn([cmp_mod(k, r) for k, r in snap.revisions.items()], ops)
        return ok, rev

    def revision(self) -> int:
        """The desired state's revision: the last `lab up/apply/delete`."""
        kv = self.etcd.get(reg.REVISION)
        return kv.mod_revision if kv else 0


def _cache(kvs: list[KV], revision: int) -> Cache:
    """A typed cache of what a read returned (the lab logs nothing of invalid keys: agents do)."""
    cache = Cache(log=lambda msg: None)
    cache.load([(kv.key, kv.value, kv.mod_revision) for kv in kvs], revision, defaultdict(set))
    return cache


def node_status(cache: Cache, node: str) -> dict[str, Any]:
    """What a node's agent reports, with its pods' statuses and whether its lease is held."""
    st = dict(cache.node_status.get(node) or {})
    st["pods"] = {k: s for k, s in cache.pod_status.items() if s.node == node}
    st["alive"] = node in cache.leases
    return st
