"""Flow records by value: which node records a connection, what a deny says, and the kernel's
messages decoded from crafted bytes (the integration tests read the real kernel's)."""

from __future__ import annotations

import argparse
import socket
import struct

from gingham.agent.flows import View, conn_record, deny_record
from gingham.kernel.conntrack import Tuple
from gingham.kernel.ctevents import IPS_DST_NAT, CtEvent, parse
from gingham.kernel.nflog import Logged, parse_packet
from gingham.kernel.rtnl import NLA_F_NESTED, attr
from gingham.lab.flows import keep, parse_since


def tup(src: str, dst: str, sport: int, dport: int, proto: int = 6) -> Tuple:
    ip = attr(1, socket.inet_aton(src)) + attr(2, socket.inet_aton(dst))
    pr = attr(1, bytes([proto])) + attr(2, struct.pack("!H", sport)) + attr(3, struct.pack("!H", dport))
    return Tuple(attr(1 | NLA_F_NESTED, ip) + attr(2 | NLA_F_NESTED, pr))


VIEW = View("node-1", pods={
    "10.244.0.2": {"namespace": "d", "name": "client", "labels": {"app": "c"}, "node": "node-1"},
    "10.244.1.2": {"namespace": "d", "name": "web-0", "labels": {"app": "web"}, "node": "node-2"},
    "10.244.0.9": {"namespace": "d", "name": "local", "labels": {}, "node": "node-1"}},
    node_ips={"192.168.200.11": "node-1", "192.168.200.12": "node-2"},
    services={("10.96.0.20", 80): {"namespace": "d", "name": "web"}},
    isolating={("abc", "I"): ["d/deny-all"]})


def ev(orig: Tuple, reply: Tuple, dnat: bool = False) -> CtEvent:
    return CtEvent("new", 1, orig, reply, IPS_DST_NAT if dnat else 0)


def test_the_source_pods_node_records_a_connection_once():
    via_service = ev(tup("10.244.0.2", "10.96.0.20", 5000, 80), tup("10.244.1.2", "10.244.0.2", 8080, 5000), dnat=True)
    rec = conn_record(VIEW, via_service, False)
    assert rec is not None and rec["service"] == {"ip": "10.96.0.20", "port": 80, "namespace": "d", "name": "web"}
    assert rec["source"]["name"] == "client" and rec["destination"]["name"] == "web-0"
    node2 = View("node-2", VIEW.pods, VIEW.node_ips, VIEW.services)
    assert conn_record(node2, ev(tup("10.244.0.2", "10.244.1.2", 5000, 8080),
                                 tup("10.244.1.2", "10.244.0.2", 8080, 5000)), False) is None  # node-1 records it
    masqueraded = ev(tup("192.168.200.11", "10.244.1.2", 40000, 8080), tup("10.244.1.2", "192.168.200.11", 8080, 40000))
    assert conn_record(node2, masqueraded, False) is None  # node-1 DNATed and recorded it
    external = ev(tup("203.0.113.5", "192.168.200.11", 5555, 30080), tup("10.244.0.9", "203.0.113.5", 8080, 5555),
                  dnat=True)
    assert conn_record(VIEW, external, False)["source"] == {"ip": "203.0.113.5", "port": 5555, "kind": "external"}
    etcd = ev(tup("192.168.200.11", "192.168.200.2", 4000, 2379), tup("192.168.200.2", "192.168.200.11", 2379, 4000))
    assert conn_record(VIEW, etcd, False) is None  # the node's own traffic


def test_a_deny_says_which_policy_isolates_the_pod():
    pkt = Logged("gingham-np I abc", 1.0, 3, "10.244.1.2", "10.244.0.9", 6, 4000, 5432, 60)
    rec = deny_record(VIEW, pkt)
    assert rec["verdict"] == "dropped" and rec["direction"] == "ingress"
    assert rec["policy"] == {"isolatedBy": ["d/deny-all"],
                             "reason": "d/local is isolated for ingress by d/deny-all and no rule allows it"}
    assert deny_record(VIEW, Logged("something else", 1.0, 3, "1.1.1.1", "2.2.2.2", 6, 1, 2, 60)) is None


def test_ctnetlink_and_nflog_messages_decode():
    o, r = tup("10.244.0.2", "10.96.0.20", 5000, 80), tup("10.244.1.2", "10.244.0.2", 8080, 5000)
    counters = lambda p, b: attr(1, struct.pack("!Q", p)) + attr(2, struct.pack("!Q", b))  # noqa: E731
    payload = struct.pack("=BBH", 2, 0, 0) + attr(1 | NLA_F_NESTED, o.raw) + attr(2 | NLA_F_NESTED, r.raw) + \
        attr(3, struct.pack("!I", IPS_DST_NAT)) + attr(9 | NLA_F_NESTED, counters(3, 180)) + \
        attr(10 | NLA_F_NESTED, counters(2, 120)) + attr(12, struct.pack("!I", 77))
    e = parse((1 << 8) | 2, payload)
    assert (e.kind, e.id, e.dnat, e.packets, e.bytes) == ("destroy", 77, True, (3, 2), (180, 120))
    assert (e.orig.src, e.orig.dport, e.reply.src) == ("10.244.0.2", 80, "10.244.1.2")
    assert parse((1 << 8) | 0, payload, 0).kind == "update"
    ip = bytes([0x45, 0, 0, 60]) + b"\0" * 5 + bytes([6]) + b"\0\0" + socket.inet_aton("10.0.0.1") + \
        socket.inet_aton("10.0.0.2") + struct.pack("!HH", 1234, 80)
    logged = parse_packet(struct.pack("=BBH", 2, 0, 0) + attr(10, b"gingham-np E xyz\0") + attr(9, ip))
    assert (logged.prefix, logged.src, logged.dst, logged.sport, logged.dport, logged.length) == (
        "gingham-np E xyz", "10.0.0.1", "10.0.0.2", 1234, 80, 60)


def test_lab_flows_filters():
    rec = {"time": 100.0, "node": "node-1", "verdict": "forwarded", "protocol": "TCP",
           "source": {"kind": "pod", "namespace": "d", "name": "client", "labels": {"app": "c"}, "port": 5},
           "destination": {"kind": "pod", "namespace": "e", "name": "web-0", "labels": {}, "port": 8080},
           "service": {"namespace": "e", "name": "web", "port": 80}}
    base = dict(from_pod=None, to_pod=None, pod=None, from_namespace=None, to_namespace=None, label=None,
                verdict=None, port=None, protocol=None, service=None, node=None, since=None)

    def ok(**kw) -> bool:
        return keep(rec, argparse.Namespace(**{**base, **kw}), 110.0)
    assert ok() and ok(from_pod="client") and ok(to_pod="e/web-0") and ok(pod="web-0") and ok(label=["app=c"])
    assert ok(port=80) and ok(port=8080) and ok(service="e/web") and ok(since=10.0) and ok(to_namespace="e")
    assert not ok(from_pod="web-0") and not ok(label=["app=web"]) and not ok(since=5.0) and not ok(protocol="UDP")
    assert parse_since("5m") == 300 and parse_since("2h") == 7200 and parse_since("30") == 30


def test_a_reused_conntrack_id_gets_its_own_end(tmp_path):
    """The kernel may give a new connection an ended one's id (the same tuple, the entry's
    memory reused); its close must still be recorded, and a second close report of one
    connection (TIME_WAIT, then CLOSE) only once."""
    from gingham.agent.flows import FlowRecorder
    r = FlowRecorder(str(tmp_path))
    r.view = VIEW
    o, rp = tup("10.244.0.2", "10.244.1.2", 5000, 8080), tup("10.244.1.2", "10.244.0.2", 8080, 5000)

    def event(kind: str, state: str = "") -> CtEvent:
        return CtEvent(kind, 7, o, rp, 0, tcp_state=state)
    ends = []
    for _ in range(2):  # the same tuple twice, with the same id
        assert r._conn(event("new", "SYN_SENT")) is None  # its start, written at once
        ends.append(r._conn(event("update", "TIME_WAIT")))
        assert r._conn(event("update", "CLOSE")) is None   # the same connection's close, again
    assert all(e is not None and e[0]["type"] == "end" for e in ends)
