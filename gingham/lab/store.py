"""The lab's side of the datastore: the API server's writes and kubectl's reads.

`write` turns a desired ClusterState into keys and writes what differs from etcd in one
transaction (one revision per `lab up/apply/delete`, with the revision marker). Reads
list the prefix into the same typed Cache the agents keep.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..model import registry as reg
from ..model.objects import ClusterState
from ..sources.cache import Cache, Changes
from ..sources.etcd import Etcd, op_delete, op_put


class ClusterStore:
    def __init__(self, etcd: Etcd) -> None:
        self.etcd = etcd

    def read(self) -> Cache:
        kvs, rev = self.etcd.range(reg.ROOT)
        cache = Cache(log=lambda msg: None)
        changes: Changes = defaultdict(set)
        cache.load([(kv.key, kv.value, kv.mod_revision) for kv in kvs], rev, changes)
        return cache

    def write(self, state: ClusterState, nodes: dict[str, reg.NodeInfo], current: Cache | None = None) -> int:
        """Writes the difference between `state` and what the store holds; the new revision."""
        want = reg.spec_keys(state, nodes)
        have = current.raw if current is not None else {kv.key: kv.value for kv in self.etcd.range(reg.ROOT)[0]}
        ops = [op_put(k, v) for k, v in want.items() if have.get(k) != v]
        ops += [op_delete(k) for k in have if reg.is_spec(k) and k not in want]
        ops.append(op_put(reg.REVISION, b"{}"))
        _, rev, _ = self.etcd.txn([], ops)
        return rev

    def revision(self) -> int:
        """The desired state's revision: the last `lab up/apply/delete`."""
        kv = self.etcd.get(reg.REVISION)
        return kv.mod_revision if kv else 0


def node_status(cache: Cache, node: str) -> dict[str, Any]:
    """What a node's agent reports, with its pods' statuses and whether its lease is held."""
    st = dict(cache.node_status.get(node) or {})
    st["pods"] = {k: s for k, s in cache.pod_status.items() if s.node == node}
    st["alive"] = node in cache.leases
    return st
