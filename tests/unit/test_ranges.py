"""host-local's range model, by value, and the walk order as a property."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gingham.ipam.ranges import RangeError, parse_range, parse_range_sets, walk

ip = ipaddress.ip_address


def test_defaults_follow_the_reference():
    r = parse_range({"subnet": "10.22.0.0/24"}, "r")
    assert (str(r.range_start), str(r.range_end), str(r.gateway)) == ("10.22.0.1", "10.22.0.254", "10.22.0.1")
    first = next(walk((r,), None))[0]
    assert first == ip("10.22.0.2")  # the gateway is skipped


def test_ipv6_range_ends_at_the_last_address():
    r = parse_range({"subnet": "fd00::/120"}, "r")
    assert str(r.range_end) == "fd00::ff"


@pytest.mark.parametrize("raw,needle", [
    ({"subnet": "10.22.0.1/24"}, "host bits set"),
    ({"subnet": "10.22.0.0/31"}, "too small"),
    ({"subnet": "10.22.0.0/24", "rangeStart": "10.23.0.5"}, "not in subnet"),
    ({"subnet": "10.22.0.0/24", "rangeStart": "10.22.0.9", "rangeEnd": "10.22.0.5"}, "after rangeEnd"),
    ({"subnet": "nonsense"}, "is not a CIDR"),
    ({}, "subnet is required"),
])
def test_bad_ranges_name_the_problem(raw, needle):
    with pytest.raises(RangeError, match=needle):
        parse_range(raw, "ipam.ranges[0][0]")


def test_overlapping_range_sets_are_refused():
    with pytest.raises(RangeError, match="overlaps"):
        parse_range_sets([[{"subnet": "10.0.0.0/16"}], [{"subnet": "10.0.5.0/24"}]])
    with pytest.raises(RangeError, match="overlaps"):
        parse_range_sets([[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/25"}]])


def test_walk_starts_after_last_reserved_and_wraps_across_ranges():
    rs = parse_range_sets([[{"subnet": "10.0.0.0/29"}, {"subnet": "10.0.1.0/29"}]])[0]
    order = [str(a) for a, _ in walk(rs, ip("10.0.0.6"))]
    assert order[:3] == ["10.0.1.2", "10.0.1.3", "10.0.1.4"]
    assert order[-1] == "10.0.0.6"


@settings(max_examples=200, deadline=None)
@given(prefix=st.integers(24, 29), last=st.integers(0, 300), gw_off=st.integers(1, 5))
def test_walk_visits_every_address_once_but_the_gateway(prefix, last, gw_off):
    net = ipaddress.ip_network(f"10.9.0.0/{prefix}")
    gw = net.network_address + gw_off
    r = parse_range({"subnet": str(net), "gateway": str(gw)}, "r")
    last_ip = net.network_address + (last % net.num_addresses)
    seen = [a for a, _ in walk((r,), last_ip)]
    expected = {a for a in net.hosts() if a != gw}
    if net.version == 4:
        expected.discard(net.broadcast_address)
    assert len(seen) == len(set(seen)) and set(seen) == expected
    if r.contains(last_ip) and last_ip != gw and last_ip + 1 <= r.range_end and last_ip + 1 != gw:
        assert seen[0] == last_ip + 1
