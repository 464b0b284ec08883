"""kernel/rtnl.py by value: attribute encoding, and answers decoded from crafted bytes."""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gingham.kernel import rtnl


@given(st.lists(st.tuples(st.integers(1, 0x3FFF), st.binary(max_size=40)), max_size=8))
def test_attributes_round_trip_with_padding(items):
    data = b"".join(rtnl.attr(t, d) for t, d in items)
    assert len(data) % 4 == 0
    assert rtnl.attrs(data) == {t: d for t, d in items}  # the last of a repeated type wins


def test_nested_attributes_carry_the_flag_and_parse_back():
    inner = rtnl.u32(rtnl.IFLA_MTU, 1450) + rtnl.string(rtnl.IFLA_IFNAME, "eth0")
    outer = rtnl.nested(rtnl.IFLA_LINKINFO, inner)
    assert struct.unpack_from("=H", outer, 2)[0] == rtnl.IFLA_LINKINFO | rtnl.NLA_F_NESTED
    got = rtnl.attrs(rtnl.attrs(outer)[rtnl.IFLA_LINKINFO])
    assert struct.unpack("=I", got[rtnl.IFLA_MTU])[0] == 1450 and rtnl.text(got[rtnl.IFLA_IFNAME]) == "eth0"


def test_mac_addresses():
    assert rtnl.mac_str(rtnl.mac_bytes("0a:1b:2c:3d:4e:5f")) == "0a:1b:2c:3d:4e:5f"


class FakeSocket:
    """Answers each send with the bytes the test prepared (the kernel's side, by hand)."""

    def __init__(self, answers):
        self.answers, self.sent = list(answers), []

    def send(self, data):
        self.sent.append(data)

    def recv(self, n):
        return self.answers.pop(0)


def msg(kind, seq, payload, flags=0):
    return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload + b"\0" * (-len(payload) & 3)


def client(answers):
    c = rtnl.Rtnl.__new__(rtnl.Rtnl)
    c.sock, c.seq = FakeSocket(answers), 0
    return c


def test_an_error_answer_carries_the_kernels_own_message():
    request_hdr = struct.pack("=IHHII", 16, rtnl.RTM_NEWLINK, 0, 1, 0)
    ext = rtnl.string(rtnl.NLMSGERR_ATTR_MSG, "Invalid MTU")
    err = msg(rtnl.NLMSG_ERROR, 1, struct.pack("=i", -errno.EINVAL) + request_hdr + ext, rtnl.NLM_F_ACK_TLVS)
    c = client([err])
    with pytest.raises(rtnl.RtnlError) as e:
        c.request(rtnl.RTM_NEWLINK, rtnl.Rtnl.ifinfo())
    assert e.value.errno == errno.EINVAL and e.value.strerror == "Invalid MTU"
    n, kind, flags, seq, _ = struct.unpack_from("=IHHII", c.sock.sent[0])
    assert (n, kind, seq) == (len(c.sock.sent[0]), rtnl.RTM_NEWLINK, 1)
    assert flags & (rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK) == rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK


def test_a_dump_collects_every_part_until_done_and_skips_stale_answers():
    link = rtnl.Rtnl.ifinfo(7) + rtnl.string(rtnl.IFLA_IFNAME, "cni0")
    stale = msg(rtnl.RTM_NEWLINK, 99, link, rtnl.NLM_F_MULTI)  # an answer to some earlier request
    part1 = msg(rtnl.RTM_NEWLINK, 1, link, rtnl.NLM_F_MULTI) + msg(rtnl.RTM_NEWLINK, 1, link, rtnl.NLM_F_MULTI)
    done = msg(rtnl.NLMSG_DONE, 1, struct.pack("=i", 0), rtnl.NLM_F_MULTI)
    got = client([stale + part1, done]).dump_links()
    assert [rtnl.parse_link(p)[0] for p in got] == [7, 7]
    assert rtnl.text(rtnl.parse_link(got[0])[2][rtnl.IFLA_IFNAME]) == "cni0"


def test_an_interrupted_dump_is_asked_again():
    done_intr = msg(rtnl.NLMSG_DONE, 1, struct.pack("=i", 0), rtnl.NLM_F_MULTI | rtnl.NLM_F_DUMP_INTR)
    done = msg(rtnl.NLMSG_DONE, 2, struct.pack("=i", 0), rtnl.NLM_F_MULTI)
    c = client([done_intr, done])
    assert c.dump_links() == [] and len(c.sock.sent) == 2


def test_a_missing_link_is_none_not_an_error():
    err = msg(rtnl.NLMSG_ERROR, 1, struct.pack("=i", -errno.ENODEV) + struct.pack("=IHHII", 16, 18, 0, 1, 0))
    assert client([err]).get_link(name="nope") is None


def test_a_port_vlan_is_one_af_bridge_message_with_the_kernels_vlan_info():
    """`bridge vlan add dev P vid 5 pvid untagged`: RTM_SETLINK, family AF_BRIDGE, IFLA_AF_SPEC
    holding struct bridge_vlan_info {u16 flags; u16 vid}; `del` is RTM_DELLINK of the same."""
    ack = msg(rtnl.NLMSG_ERROR, 1, struct.pack("=i", 0) + struct.pack("=IHHII", 16, 0, 0, 1, 0))
    for add, kind in ((True, rtnl.RTM_SETLINK), (False, rtnl.RTM_DELLINK)):
        c = client([ack])
        c.port_vlan(add, 9, 5, rtnl.BRIDGE_VLAN_INFO_PVID | rtnl.BRIDGE_VLAN_INFO_UNTAGGED)
        sent = c.sock.sent[0]
        assert struct.unpack_from("=H", sent, 4)[0] == kind
        family, _, index, _, _ = struct.unpack_from("=BxHiII", sent, 16)
        assert (family, index) == (rtnl.AF_BRIDGE, 9)
        spec = rtnl.attrs(sent[32:])[rtnl.IFLA_AF_SPEC]
        assert rtnl.attrs(spec)[rtnl.IFLA_BRIDGE_VLAN_INFO] == struct.pack("=HH", 0x2 | 0x4, 5)
