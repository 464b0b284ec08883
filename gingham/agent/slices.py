"""kube-controller-manager's EndpointSlice controller, run by one agent at a time.

Every agent derives endpoints itself (model/endpoints.py) to program its node; one of them,
the holder of `/registry/leases/kube-system/gingham-endpointslice-controller` (a key under
its node lease, so it goes when that node goes and another agent takes over), also writes
them to the datastore as discovery.k8s.io/v1 EndpointSlices (model/registry.py's
encode_slices: one per set of resolved ports, the first named after the Service), so that
`lab get endpointslices` and anything reading etcd see what the nodes use. It writes what
differs for the Services a pass touched; a new holder compares all.
"""

from __future__ import annotations

from typing import Mapping

from ..model import registry as reg
from ..model.services import Endpoint, Service
from ..sources.cache import Cache
from ..sources.etcd import Etcd, cmp_absent, op_delete, op_put
from ..sources.lease import NodeLease

BATCH = 5000  # operations per transaction


class EndpointSliceController:
    def __init__(self, etcd: Etcd, node: str, lease: NodeLease) -> None:
        self.etcd, self.node, self.lease = etcd, node, lease
        self.leading = False
        self.written: dict[str, set[str]] = {}  # Service key -> its slices' keys
        self.values: dict[str, bytes] = {}      # slice key -> what this agent last wrote

    def lead(self, cache: Cache) -> bool:
        """Holds the controller's key, taking it when it is free (True: this agent writes)."""
        if cache.raw.get(reg.SLICE_LEADER) == self.node.encode():
            return True
        if reg.SLICE_LEADER in cache.raw or not self.lease.lease:
            return False
        ok, _, _ = self.etcd.txn([cmp_absent(reg.SLICE_LEADER)],
                                 [op_put(reg.SLICE_LEADER, self.node.encode(), lease=self.lease.lease)])
        return ok

    def sync(self, cache: Cache, services: Mapping[str, Service], eps: Mapping[str, list[Endpoint]],
             touched: set[str]) -> None:
        if not self.lead(cache):
            self.leading = False
            return
        if not self.leading:  # just took over: what the datastore holds, by Service, and compare everything
            self.written, self.values = {}, {}
            for k, v in cache.raw.items():
                if k.startswith(reg.ENDPOINT_SLICES) and v:
                    try:
                        ns, svc_name, _ = reg.decode_slice(v)
                    except (reg.DecodeError, KeyError, TypeError, ValueError):
                        ns, svc_name = k[len(reg.ENDPOINT_SLICES):].split("/", 1)[0], ""
                    self.written.setdefault(f"{ns}/{svc_name}", set()).add(k)
            touched = set(services) | set(self.written)
            self.leading = True
        ops = []
        for key in touched:
            svc = services.get(key)
            ns = key.split("/", 1)[0]
            want = {f"{reg.ENDPOINT_SLICES}{ns}/{name}": reg.dumps(doc) for name, doc in reg.encode_slices(
                svc, eps.get(key, [])).items()} if svc is not None and svc.selector is not None and \
                svc.type != "ExternalName" else {}
            ops += [op_put(k, v) for k, v in want.items() if self.values.get(k, cache.raw.get(k)) != v]
            for k in self.written.get(key, set()) - want.keys():
                ops.append(op_delete(k))
                self.values.pop(k, None)
            self.values.update(want)
            if want:
                self.written[key] = set(want)
            else:
                self.written.pop(key, None)
        for i in range(0, len(ops), BATCH):
            self.etcd.txn([], ops[i:i + BATCH])
