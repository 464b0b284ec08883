"""host-local's range model: parsing, canonical defaults, overlap checks, iteration.

Pure: no files, no kernel. The defaults and the walk order are the reference
plugin's (allocator/range.go, allocator.go) so that both pick the same addresses.
"""

from __future__ import annotations

import ipaddress

from ..records import record
TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any, Iterator, Sequence, Union

    IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
    IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class RangeError(ValueError):
    """A range in the IPAM config is malformed; the message names it."""


@record(frozen=True)
class Range:
    subnet: IPNetwork
    range_start: IPAddress
    range_end: IPAddress
    gateway: IPAddress | None

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.subnet.version and int(self.range_start) <= int(ip) <= int(self.range_end)

    def size(self) -> int:
        n = int(self.range_end) - int(self.range_start) + 1
        if self.gateway is not None and self.contains(self.gateway):
            n -= 1
        return n

    def to_dict(self) -> dict[str, str]:
        d = {"subnet": str(self.subnet), "rangeStart": str(self.range_start),
             "rangeEnd": str(self.range_end)}
        if self.gateway is not None:
            d["gateway"] = str(self.gateway)
        return d


RangeSet = tuple[Range, ...]


def _addr(raw: Any, where: str) -> IPAddress:
    if not isinstance(raw, str):
        raise RangeError(f"{where} must be a string IP address, got {raw!r}")
    try:
        return ipaddress.ip_address(raw)
    except ValueError as e:
        raise RangeError(f"{where}: {raw!r} is not an IP address") from e


def parse_range(raw: Any, where: str) -> Range:
    """One `{subnet, rangeStart, rangeEnd, gateway}` object, canonicalised."""
    if not isinstance(raw, dict):
        raise RangeError(f"{where} must be an object with a subnet")
    sub = raw.get("subnet")
    if not isinstance(sub, str) or not sub:
        raise RangeError(f"{where}.subnet is required (e.g. \"10.22.0.0/16\")")
    try:
        iface = ipaddress.ip_interface(sub)
    except ValueError as e:
        raise RangeError(f"{where}.subnet: {sub!r} is not a CIDR") from e
    net = iface.network
    if iface.ip != net.network_address:
        raise RangeError(f"{where}.subnet: {sub} has host bits set (did you mean {net}?)")
    if net.prefixlen > net.max_prefixlen - 2:
        raise RangeError(f"{where}.subnet: network {net} is too small to allocate from")
    first = net.network_address + 1
    last = net.broadcast_address - 1 if net.version == 4 else net.broadcast_address
    start = _addr(raw["rangeStart"], f"{where}.rangeStart") if raw.get("rangeStart") else first
    end = _addr(raw["rangeEnd"], f"{where}.rangeEnd") if raw.get("rangeEnd") else last
    gw = _addr(raw["gateway"], f"{where}.gateway") if raw.get("gateway") else first
    for label, ip in (("rangeStart", start), ("rangeEnd", end), ("gateway", gw)):
        if ip.version != net.version or ip not in net:
            raise RangeError(f"{where}.{label}: {ip} is not in subnet {net}")
    if int(start) > int(end):
        raise RangeError(f"{where}: rangeStart {start} is after rangeEnd {end}")
    return Range(net, start, end, gw)


def _overlaps(a: Range, b: Range) -> bool:
    return a.subnet.version == b.subnet.version and int(a.range_start) <= int(b.range_end) \
        and int(b.range_start) <= int(a.range_end)


def parse_range_sets(raw: Any, where: str = "ipam.ranges") -> tuple[RangeSet, ...]:
    """`ranges: [[range, ...], ...]`: each inner list is one pool; pools must not overlap."""
    if not isinstance(raw, list):
        raise RangeError(f"{where} must be a list of lists of ranges")
    sets: list[RangeSet] = []
    for i, rs in enumerate(raw):
        if not isinstance(rs, list) or not rs:
            raise RangeError(f"{where}[{i}] must be a non-empty list of ranges")
        parsed = tuple(parse_range(r, f"{where}[{i}][{j}]") for j, r in enumerate(rs))
        if len({r.subnet.version for r in parsed}) > 1:
            raise RangeError(f"{where}[{i}] mixes IPv4 and IPv6 ranges")
        for j, a in enumerate(parsed):
            for k, b in enumerate(parsed[:j]):
                if _overlaps(a, b):
                    raise RangeError(f"{where}[{i}][{j}] ({a.subnet}) overlaps {where}[{i}][{k}] ({b.subnet})")
        sets.append(parsed)
    for i, a_set in enumerate(sets):
        for k, b_set in enumerate(sets[:i]):
            if any(_overlaps(a, b) for a in a_set for b in b_set):
                raise RangeError(f"range set {where}[{i}] overlaps range set {where}[{k}]")
    return tuple(sets)


def set_contains(rs: RangeSet, ip: IPAddress) -> Range | None:
    for r in rs:
        if r.contains(ip):
            return r
    return None


def walk(rs: RangeSet, last_reserved: IPAddress | None) -> Iterator[tuple[IPAddress, Range]]:
    """Candidate addresses in the reference's round-robin order.

    Starts after the last reserved address when it is still in the set (so a crash-looping
    container does not get the same address back at once), otherwise at the first
    rangeStart; wraps from one range's end to the next range's start; skips gateways;
    ends when it comes back to where it began.
    """
    idx, cur = 0, None
    if last_reserved is not None:
        for i, r in enumerate(rs):
            if r.contains(last_reserved):
                idx, cur = i, last_reserved
                break
    start: IPAddress | None = None
    while True:
        r = rs[idx]
        if cur is None:
            cur = r.range_start
        elif cur == r.range_end:
            idx = (idx + 1) % len(rs)
            r = rs[idx]
            cur = r.range_start
        else:
            cur = cur + 1
        if start is None:
            start = cur
        elif cur == start:
            return
        if cur == r.gateway:
            continue
        yield cur, r


def free_count(rs: RangeSet, used: Sequence[IPAddress]) -> int:
    """Addresses still free in a set, given the reserved ones."""
    total = sum(r.size() for r in rs)
    taken = sum(1 for ip in set(used) if (r := set_contains(rs, ip)) and ip != r.gateway)
    return total - taken
