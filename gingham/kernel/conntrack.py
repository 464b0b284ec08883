"""Conntrack entries deleted over ctnetlink (what `conntrack -D` does), errors checked.

Used when a UDP endpoint goes away (its flows must not keep going to it: kube-proxy's
stale-UDP cleanup) and when a UDP hostPort mapping changes (portmap). The table is dumped
and each entry that matches is deleted by its original tuple; an entry that is gone by
then is no error, anything else is an RtnlError.
"""

from __future__ import annotations

import _socket
import errno
import struct

from .rtnl import NLA_F_NESTED, Rtnl, RtnlError, attr, attrs

TYPE_CHECKING = False  # typing is not imported at run time: portmap, a CNI plugin, uses this module
if TYPE_CHECKING:
    from typing import Callable

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 1, 2
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY = 1, 2
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
UDP = 17


# The layout of every IPv4 TCP, UDP and SCTP tuple ctnetlink sends (lengths and inner attribute
# headers in host order): read at fixed offsets, the rest through the attribute walk.
# (One struct reads the headers; their expected values are compared as one tuple.)
_HEADERS = struct.Struct("=H2xHH4xHH4xH2xHH4xHH4xHH")
_EXPECTED = (20, 8, CTA_IP_V4_SRC, 8, CTA_IP_V4_DST, 28, 5, CTA_PROTO_NUM, 6, CTA_PROTO_SRC_PORT, 6, CTA_PROTO_DST_PORT)
_PORTS = struct.Struct("!H6xH")


class Tuple:
    """One direction of an entry: addresses, protocol and ports (0 where there are none)."""

    __slots__ = ("raw", "src", "dst", "proto", "sport", "dport")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw  # as ctnetlink sent it: what a GET or DELETE of the entry names it by
        if len(raw) == 48 and _HEADERS.unpack_from(raw) == _EXPECTED:
            self.src, self.dst = _socket.inet_ntoa(raw[8:12]), _socket.inet_ntoa(raw[16:20])
            self.proto = raw[28]
            self.sport, self.dport = _PORTS.unpack_from(raw, 36)
            return
        a = attrs(raw)
        ip, proto = attrs(a.get(CTA_TUPLE_IP, b"")), attrs(a.get(CTA_TUPLE_PROTO, b""))
        self.src = _socket.inet_ntoa(ip[CTA_IP_V4_SRC]) if len(ip.get(CTA_IP_V4_SRC, b"")) == 4 else ""
        self.dst = _socket.inet_ntoa(ip[CTA_IP_V4_DST]) if len(ip.get(CTA_IP_V4_DST, b"")) == 4 else ""
        self.proto = proto[CTA_PROTO_NUM][0] if proto.get(CTA_PROTO_NUM) else 0
        self.sport = struct.unpack("!H", proto[CTA_PROTO_SRC_PORT])[0] if CTA_PROTO_SRC_PORT in proto else 0
        self.dport = struct.unpack("!H", proto[CTA_PROTO_DST_PORT])[0] if CTA_PROTO_DST_PORT in proto else 0


def _msg(kind: int) -> int:
    return (NFNL_SUBSYS_CTNETLINK << 8) | kind


def delete(match: Callable[[Tuple, Tuple], bool]) -> int:
    """Deletes every IPv4 entry for which match(original, reply) holds; how many were deleted."""
    nfgen = struct.pack("=BBH", _socket.AF_INET, 0, 0)
    nl = Rtnl(NETLINK_NETFILTER)
    try:
        entries = nl.dump(_msg(IPCTNL_MSG_CT_GET), nfgen)
        deleted = 0
        for payload in entries:
            a = attrs(payload, 4)
            orig, reply = a.get(CTA_TUPLE_ORIG), a.get(CTA_TUPLE_REPLY)
            if orig is None or reply is None or not match(Tuple(orig), Tuple(reply)):
                continue
            try:
                nl.request(_msg(IPCTNL_MSG_CT_DELETE), nfgen + attr(CTA_TUPLE_ORIG | NLA_F_NESTED, orig))
                deleted += 1
            except RtnlError as e:
                if e.errno != errno.ENOENT:  # gone meanwhile (it timed out, or another delete)
                    raise
        return deleted
    finally:
        nl.close()


def delete_udp_from(ip: str) -> int:
    """`conntrack -D -p udp --reply-src IP`: the UDP flows an endpoint at `ip` answers."""
    return delete(lambda o, r: r.proto == UDP and r.src == ip)


def delete_udp_to_port(port: int) -> int:
    """`conntrack -D -p udp --orig-port-dst PORT`: the UDP flows sent to `port`."""
    return delete(lambda o, r: o.proto == UDP and o.dport == port)
