"""`gingham lab top`'s frame by value: rates between two scrapes, the programming p99 from
bucket differences (as Prometheus' histogram_quantile reads them), top talkers and drops."""

from __future__ import annotations

import math

from gingham.lab.top import Scrape, frame, parse, quantile, render

BEFORE = """
gingham_flows_total{type="start",verdict="forwarded",protocol="TCP"} 10
gingham_flows_total{type="denied",verdict="dropped",protocol="TCP"} 1
gingham_policy_drops_total{policy="shop/db",direction="ingress",reason="no rule allows it"} 1
gingham_dns_requests_total{type="A",rcode="NOERROR"} 100
gingham_conntrack_entries 50
gingham_conntrack_max 1000
gingham_network_programming_duration_seconds_bucket{le="0.01"} 5
gingham_network_programming_duration_seconds_bucket{le="0.1"} 5
gingham_network_programming_duration_seconds_bucket{le="+Inf"} 5
gingham_peer_rtt_seconds_sum{kind="node",target_node="node-2"} 0.010
gingham_peer_rtt_seconds_count{kind="node",target_node="node-2"} 10
"""
AFTER = """
gingham_flows_total{type="start",verdict="forwarded",protocol="TCP"} 30
gingham_flows_total{type="start",verdict="forwarded",protocol="UDP"} 4
gingham_flows_total{type="denied",verdict="dropped",protocol="TCP"} 5
gingham_policy_drops_total{policy="shop/db",direction="ingress",reason="no rule allows it"} 5
gingham_dns_requests_total{type="A",rcode="NOERROR"} 140
gingham_dns_requests_total{type="A",rcode="SERVFAIL"} 2
gingham_conntrack_entries 250
gingham_conntrack_max 1000
gingham_network_programming_duration_seconds_bucket{le="0.01"} 5
gingham_network_programming_duration_seconds_bucket{le="0.1"} 7
gingham_network_programming_duration_seconds_bucket{le="+Inf"} 7
gingham_peer_rtt_seconds_sum{kind="node",target_node="node-2"} 0.012
gingham_peer_rtt_seconds_count{kind="node",target_node="node-2"} 12
"""


def end(src: str, dst: str, nbytes: int) -> dict:
    side = lambda n: {"kind": "pod", "namespace": "d", "name": n}  # noqa: E731
    return {"type": "end", "source": side(src), "destination": side(dst), "bytes": nbytes}


def test_a_frame_is_what_happened_between_two_scrapes() -> None:
    before = [Scrape("node-1", 100.0, parse(BEFORE), True), Scrape("node-2", 100.0, {}, False)]
    after = [Scrape("node-1", 102.0, parse(AFTER), True), Scrape("node-2", 102.0, {}, False)]
    records = [end("a", "b", 100), end("a", "b", 50), end("c", "b", 1000), {"type": "start"}]
    f = frame(before, after, records)
    n1 = f.nodes[0]
    assert (n1["forwarded"], n1["dropped"], n1["dns"], n1["servfail"], n1["conntrack"]) == (12.0, 2.0, 21.0, 1.0, 0.25)
    assert math.isclose(n1["programming_p99"], 0.01 + 0.09 * 0.99) and math.isclose(n1["rtt"], 0.001)
    assert f.nodes[1] == {"node": "node-2", "up": False}
    assert f.talkers == [("d/c", "d/b", 1000, 1), ("d/a", "d/b", 150, 2)]
    assert f.drops == [("shop/db", 2.0)]
    assert render(f) is not None


def test_quantile_reads_buckets_as_prometheus_does() -> None:
    assert math.isclose(quantile(0.5, {0.1: 0, 0.2: 10, math.inf: 10}), 0.15)
    assert quantile(0.99, {1.0: 0, math.inf: 0}) is None  # nothing observed
    assert quantile(0.99, {1.0: 0, math.inf: 3}) == 1.0   # above the last bound: the last bound
