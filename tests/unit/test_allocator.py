"""The allocator against an in-memory store: exhaustion, requests, duplicates, rollback."""

from __future__ import annotations

import ipaddress

import pytest

from gingham.ipam.allocator import AllocationError, allocate
from gingham.ipam.ranges import parse_range_sets


class MemStore:
    def __init__(self) -> None:
        self.ips: dict[object, tuple[str, str]] = {}
        self.last: dict[int, object] = {}

    def reserve(self, cid, ifname, ip, idx):
        if ip in self.ips:
            return False
        self.ips[ip] = (cid, ifname)
        self.last[idx] = ip
        return True

    def last_reserved(self, idx):
        return self.last.get(idx)

    def owned_by(self, cid, ifname):
        return [ip for ip, o in self.ips.items() if o == (cid, ifname)]

    def release(self, ip):
        self.ips.pop(ip, None)


def test_round_robin_and_exhaustion():
    sets = parse_range_sets([[{"subnet": "10.0.0.0/29"}]])
    st = MemStore()
    got = [str(allocate(st, sets, f"c{i}", "eth0")[0].ip) for i in range(5)]
    assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(AllocationError) as e:
        allocate(st, sets, "c9", "eth0")
    assert e.value.exhausted and "no IP addresses available" in str(e.value)
    st.release(ipaddress.ip_address("10.0.0.3"))
    assert str(allocate(st, sets, "c10", "eth0")[0].ip) == "10.0.0.3"


def test_requested_ip_gateway_and_duplicates():
    sets = parse_range_sets([[{"subnet": "10.0.0.0/24"}]])
    st = MemStore()
    assert str(allocate(st, sets, "a", "eth0", [ipaddress.ip_address("10.0.0.77")])[0].ip) == "10.0.0.77"
    with pytest.raises(AllocationError, match="not available"):
        allocate(st, sets, "b", "eth0", [ipaddress.ip_address("10.0.0.77")])
    with pytest.raises(AllocationError, match="gateway"):
        allocate(st, sets, "b", "eth0", [ipaddress.ip_address("10.0.0.1")])
    with pytest.raises(AllocationError, match="duplicate"):
        allocate(st, sets, "a", "eth0")
    with pytest.raises(AllocationError, match="not in any configured range"):
        allocate(st, sets, "c", "eth0", [ipaddress.ip_address("192.168.0.5")])
    assert st.owned_by("c", "eth0") == []


def test_a_failing_second_set_releases_the_first():
    sets = parse_range_sets([[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/30"}]])
    st = MemStore()
    allocate(st, sets, "x", "eth0")
    with pytest.raises(AllocationError):
        allocate(st, sets, "y", "eth0")  # 10.1.0.0/30 has one usable address, now taken
    assert st.owned_by("y", "eth0") == []
