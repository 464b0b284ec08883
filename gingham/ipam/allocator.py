"""Picks addresses for one attachment from several range sets, all or nothing."""

from __future__ import annotations


from ..records import record
from .ranges import Range, RangeSet, set_contains, walk

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Protocol, Sequence

    from .ranges import IPAddress

    class Store(Protocol):
        def reserve(self, cid: str, ifname: str, ip: IPAddress, rangeset_idx: int) -> bool: ...
        def last_reserved(self, idx: int) -> IPAddress | None: ...
        def owned_by(self, cid: str, ifname: str) -> list[IPAddress]: ...
        def release(self, ip: IPAddress) -> None: ...


class AllocationError(Exception):
    """No address could be reserved; `exhausted` tells a full pool from a bad request."""

    def __init__(self, msg: str, exhausted: bool = False) -> None:
        super().__init__(msg)
        self.exhausted = exhausted


@record(frozen=True)
class Allocation:
    ip: IPAddress
    range: Range
    rangeset_idx: int


def allocate(store: Store, sets: Sequence[RangeSet], cid: str, ifname: str,
             requested: Sequence[IPAddress] = ()) -> list[Allocation]:
    """One address from every range set (a requested one where it falls in the set).

    The caller holds the store's lock. On any failure the addresses reserved so far
    are released again, so a failed ADD leaves no allocation behind.
    """
    pending = list(dict.fromkeys(requested))
    held = store.owned_by(cid, ifname)
    done: list[Allocation] = []
    try:
        for idx, rs in enumerate(sets):
            for ip in held:
                if set_contains(rs, ip):
                    raise AllocationError(f"{ip} has been allocated to {cid}/{ifname}, "
                                          "duplicate allocation is not allowed")
            want = next((ip for ip in pending if set_contains(rs, ip)), None)
            if want is not None:
                pending.remove(want)
                r = set_contains(rs, want)
                assert r is not None
                if want == r.gateway:
                    raise AllocationError(f"requested IP {want} is the gateway of {r.subnet}")
                if not store.reserve(cid, ifname, want, idx):
                    raise AllocationError(f"requested IP address {want} is not available in range set "
                                          f"{_describe(rs)}")
                done.append(Allocation(want, r, idx))
                continue
            for ip, r in walk(rs, store.last_reserved(idx)):
                if store.reserve(cid, ifname, ip, idx):
                    done.append(Allocation(ip, r, idx))
                    break
            else:
                raise AllocationError(f"no IP addresses available in range set {_describe(rs)}",
                                      exhausted=True)
        if pending:
            raise AllocationError("requested IPs " + ", ".join(map(str, pending)) +
                                  " are not in any configured range")
    except AllocationError:
        for a in done:
            store.release(a.ip)
        raise
    return done


def _describe(rs: RangeSet) -> str:
    return ",".join(f"{r.range_start}-{r.range_end}" for r in rs)
