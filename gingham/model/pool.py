"""A LoadBalancer address pool as a range (a CIDR or "first-last"), never a list of addresses.

A /8 holds 16 million addresses: the pool answers "is this one of yours" and "the first
one not taken" by arithmetic, so its size costs nothing (MetalLB's pools are ranges too).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Container


@dataclass(frozen=True)
class AddressPool:
    first: int
    last: int
    version: int

    def __contains__(self, ip: object) -> bool:
        try:
            a = ipaddress.ip_address(ip)  # type: ignore[arg-type]
        except ValueError:
            return False
        return a.version == self.version and self.first <= int(a) <= self.last

    def first_free(self, taken: Container[str]) -> str:
        """The lowest address not in `taken` ("" when every one is): walks past taken ones only."""
        for n in range(self.first, self.last + 1):
            ip = str(ipaddress.IPv4Address(n) if self.version == 4 else ipaddress.IPv6Address(n))
            if ip not in taken:
                return ip
        return ""


EMPTY = AddressPool(1, 0, 4)  # no address at all: a cluster without a pool


def parse_pool(pool: str) -> AddressPool:
    """A CIDR (its usable hosts: without network and broadcast above a /31) or "first-last"."""
    if not isinstance(pool, str):
        raise ValueError(f"{pool!r} is not a CIDR or a first-last range")
    if "-" in pool:
        a, _, b = pool.partition("-")
        try:
            first, last = ipaddress.ip_address(a.strip()), ipaddress.ip_address(b.strip())
        except ValueError:
            raise ValueError(f"{pool!r} is not a range of two IP addresses") from None
        if last.version != first.version or int(last) < int(first):
            raise ValueError(f"{pool!r}: the range is reversed")
        return AddressPool(int(first), int(last), first.version)
    try:
        net = ipaddress.ip_network(pool)
    except ValueError:
        raise ValueError(f"{pool!r} is not a CIDR (host bits zero) or a first-last range") from None
    lo, hi = int(net.network_address), int(net.broadcast_address)
    if net.version == 4 and net.prefixlen < 31:
        lo, hi = lo + 1, hi - 1
    elif net.version == 6 and net.prefixlen < 127:
        lo += 1  # IPv6 has no broadcast; the subnet-router anycast address is not a host's
    return AddressPool(lo, hi, net.version)
