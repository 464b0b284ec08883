"""A small rtnetlink client on a raw socket: the messages gingham sends, and nothing else.

pyroute2 0.9 runs every request through an asyncio loop and a generic message
framework; a CNI ADD made of a dozen requests spent 13 ms in it and 1 ms in the kernel.
Here a request is a `struct.pack` and one `send`, an answer one `recv` and a walk over
its attributes. The socket belongs to the network namespace of the thread that opens it
(`netns.entered`). Errors come back as `RtnlError` with the errno and the kernel's own
extended-ack message when it gives one.
"""

from __future__ import annotations

import _socket  # the C module: socket.py's enums cost a plugin process 5 ms of imports
import errno
import os
import struct

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Iterator

# netlink
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800
NLM_F_ACK_TLVS = 0x200
NLMSG_ERROR, NLMSG_DONE = 2, 3
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 0x8000

# rtnetlink message types
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30

# link attributes
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_PROTINFO, IFLA_OPERSTATE, IFLA_LINKINFO = 12, 16, 18
IFLA_NET_NS_FD, IFLA_EXT_MASK = 28, 29
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin
IFLA_AF_SPEC, IFLA_BRIDGE_VLAN_INFO = 26, 2          # a bridge port's VLANs (family AF_BRIDGE)
IFLA_BR_VLAN_FILTERING = 7                           # in a bridge's IFLA_INFO_DATA
BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED = 0x2, 0x4
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING = 1, 3, 4, 7
IFLA_VXLAN_PORT, IFLA_VXLAN_UDP_CSUM = 15, 18
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFF_UP, IFF_PROMISC = 0x1, 0x100
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

# address, route and neighbour attributes
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFA_F_NODAD = 0x02
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_METRICS, RTA_TABLE = 1, 4, 5, 6, 7, 8, 15
RTAX_MTU = 2
RTPROT_BOOT, RTN_UNICAST, RT_SCOPE_NOWHERE, RTNH_F_ONLINK = 3, 1, 255, 4
NDA_DST, NDA_LLADDR = 1, 2
NUD_PERMANENT, NTF_SELF = 0x80, 0x02

AF_BRIDGE = 7
_HDR = struct.Struct("=IHHII")
# Python allocates the whole buffer for each recv before shrinking it to what came, and 128 kB
# or more comes from mmap: a system call pair per answer. A dump part is at most 32 kB (the
# kernel caps it there whatever the buffer), a get's answer one small message.
RECV_SMALL = 1 << 16
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")


class RtnlError(OSError):
    pass


def attr(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("=HH", n, kind) + data + b"\0" * (-n & 3)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def u8(kind: int, v: int) -> bytes:
    return attr(kind, struct.pack("=B", v))


def u32(kind: int, v: int) -> bytes:
    return attr(kind, struct.pack("=I", v))


def string(kind: int, s: str) -> bytes:
    return attr(kind, s.encode() + b"\0")


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def mac_str(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The attributes in `data` from `offset`, by type (the last of a repeated type wins)."""
    out = {}
    while offset + 4 <= len(data):
        n, kind = struct.unpack_from("=HH", data, offset)
        if n < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4:offset + n]
        offset += (n + 3) & ~3
    return out


def text(b: bytes | None) -> str:
    return b.split(b"\0", 1)[0].decode() if b else ""


class Rtnl:
    """One netlink socket (NETLINK_ROUTE unless told: kernel/conntrack.py opens NETLINK_NETFILTER
    with the same framing), one request at a time."""

    def __init__(self, protocol: int = _socket.NETLINK_ROUTE) -> None:
        self.sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, protocol)
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            try:
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self.seq += 1
        self.sock.send(_HDR.pack(_HDR.size + len(body), kind, NLM_F_REQUEST | flags, self.seq, 0) + body)
        return self.seq

    def _replies(self, seq: int) -> Iterator[tuple[int, int, bytes]]:
        """(type, flags, payload) of each answer to `seq`, until its ack or end of dump."""
        while True:
            data = self.sock.recv(RECV_SMALL)  # the kernel makes a dump part 32 kB at most
            off = 0
            while off + _HDR.size <= len(data):
                n, kind, flags, s, _ = _HDR.unpack_from(data, off)
                payload = data[off + _HDR.size:off + n]
                off += (n + 3) & ~3
                if s != seq:
                    continue
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        msg = ""
                        if flags & NLM_F_ACK_TLVS:
                            msg = text(attrs(payload, 4 + _HDR.size).get(NLMSGERR_ATTR_MSG))
                        raise RtnlError(code, msg or os.strerror(code))
                    return
                if kind == NLMSG_DONE:
                    if flags & NLM_F_DUMP_INTR:
                        raise RtnlError(errno.EINTR, "dump interrupted")
                    return
                yield kind, flags, payload

    def request(self, kind: int, body: bytes, flags: int = 0) -> list[bytes]:
        """Sends one request and returns the payloads of its answers (a get's one message)."""
        seq = self._send(kind, flags | NLM_F_ACK, body)
        return [p for _, _, p in self._replies(seq)]

    def get_many(self, kind: int, bodies: list[bytes], timeout: float = 1.0) -> list[bytes | int]:
        """Many get requests in one write and without acks (a get is answered by its message or by
        an error): each request's answer payload, or the errno it was refused with (ETIMEDOUT
        for one the kernel did not answer within `timeout`). One write instead of one per entry,
        and no ack to read: what a per-event lookup costs is mostly those system calls."""
        first = self.seq + 1
        self.seq += len(bodies)
        self.sock.send(b"".join(_HDR.pack(_HDR.size + len(b), kind, NLM_F_REQUEST, first + i, 0) + b
                                for i, b in enumerate(bodies)))
        out: list[bytes | int] = [errno.ETIMEDOUT] * len(bodies)
        left, flags = len(bodies), 0
        self.sock.settimeout(timeout)
        try:
            while left:
                try:
                    data = self.sock.recv(RECV_SMALL, flags)
                except OSError as e:
                    if e.errno != errno.ENOBUFS:
                        raise
                    # the kernel dropped answers the buffer could not take: read what it kept, no waiting
                    out = [errno.ENOBUFS if v == errno.ETIMEDOUT else v for v in out]
                    flags = _socket.MSG_DONTWAIT
                    continue
                off = 0
                while off + _HDR.size <= len(data):
                    n, mtype, _, s, _ = _HDR.unpack_from(data, off)
                    payload, off = data[off + _HDR.size:off + n], off + ((n + 3) & ~3)
                    if not first <= s < first + len(bodies):
                        continue
                    out[s - first] = -struct.unpack_from("=i", payload)[0] if mtype == NLMSG_ERROR else payload
                    left -= 1
        except (TimeoutError, BlockingIOError):
            pass
        finally:
            self.sock.settimeout(None)
        return out

    def dump(self, kind: int, body: bytes) -> list[bytes]:
        for attempt in range(5):
            try:
                return [p for _, _, p in self._replies(self._send(kind, NLM_F_DUMP, body))]
            except RtnlError as e:
                if e.errno != errno.EINTR or attempt == 4:
                    raise
        return []

    # -- links ------------------------------------------------------------------
    @staticmethod
    def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
        return _IFINFO.pack(family, 0, index, flags, change)

    def get_link(self, name: str = "", index: int = 0) -> bytes | None:
        """The RTM_NEWLINK payload describing one link, or None when there is none."""
        body = self.ifinfo(index) + u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        if name:
            body += string(IFLA_IFNAME, name)
        try:
            got = self.request(RTM_GETLINK, body)
        except RtnlError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        return got[0] if got else None

    def dump_links(self) -> list[bytes]:
        return self.dump(RTM_GETLINK, self.ifinfo() + u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS))

    def new_link(self, body: bytes, create: bool = True) -> None:
        self.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL if create else 0)

    def del_link(self, index: int) -> None:
        self.request(RTM_DELLINK, self.ifinfo(index))

    def port_vlan(self, add: bool, index: int, vid: int, flags: int = 0) -> None:
        """`bridge vlan add|del dev <port> vid <vid> [pvid] [untagged]`: one VLAN of a bridge port."""
        info = nested(IFLA_AF_SPEC, attr(IFLA_BRIDGE_VLAN_INFO, struct.pack("=HH", flags, vid)))
        self.request(RTM_SETLINK if add else RTM_DELLINK, self.ifinfo(index, family=AF_BRIDGE) + info)

    # -- addresses, routes, neighbours -------------------------------------------
    def dump_addresses(self, family: int = 0) -> list[bytes]:
        return self.dump(RTM_GETADDR, _IFADDR.pack(family, 0, 0, 0, 0))

    def address(self, add: bool, index: int, ip: bytes, prefixlen: int, flags: int = 0) -> None:
        family = _socket.AF_INET if len(ip) == 4 else _socket.AF_INET6
        body = _IFADDR.pack(family, prefixlen, flags, 0, index) + attr(IFA_LOCAL, ip) + attr(IFA_ADDRESS, ip)
        self.request(RTM_NEWADDR if add else RTM_DELADDR, body, NLM_F_CREATE | NLM_F_EXCL if add else 0)

    def route(self, kind: int, family: int, dst: bytes, dst_len: int, flags: int, scope: int, table: int,
              extra: bytes, rtm_flags: int = 0) -> None:
        """RTM_NEWROUTE as `ip route add` sends it (proto boot, unicast), or RTM_DELROUTE
        matching any protocol, type and scope, as `ip route del` does."""
        new = kind == RTM_NEWROUTE
        body = _RTMSG.pack(family, dst_len, 0, 0, table if table < 256 else 252, RTPROT_BOOT if new else 0,
                           scope if new else RT_SCOPE_NOWHERE, RTN_UNICAST if new else 0, rtm_flags)
        if dst_len:
            body += attr(RTA_DST, dst)
        if table >= 256:
            body += u32(RTA_TABLE, table)
        self.request(kind, body + extra, flags)

    def get_route(self, dst: bytes) -> bytes:
        """The kernel's answer to `ip route get DST`: the route a packet to `dst` would take."""
        family = _socket.AF_INET if len(dst) == 4 else _socket.AF_INET6
        body = _RTMSG.pack(family, len(dst) * 8, 0, 0, 0, 0, 0, 0, 0) + attr(RTA_DST, dst)
        return self.request(RTM_GETROUTE, body)[0]

    def dump_routes(self, family: int) -> list[bytes]:
        return self.dump(RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0))

    def neigh(self, kind: int, flags: int, family: int, index: int, state: int, ntf: int, extra: bytes) -> None:
        self.request(kind, _NDMSG.pack(family, index, state, ntf, 0) + extra, flags)

    def dump_neigh(self, family: int, index: int = 0) -> list[bytes]:
        return self.dump(RTM_GETNEIGH, _NDMSG.pack(family, index, 0, 0, 0))


def parse_link(payload: bytes) -> tuple[int, int, dict[int, bytes], str]:
    """(index, flags, attributes, kind) of an RTM_NEWLINK payload."""
    _, _, index, flags, _ = _IFINFO.unpack_from(payload)
    a = attrs(payload, _IFINFO.size)
    info = attrs(a[IFLA_LINKINFO]) if IFLA_LINKINFO in a else {}
    return index, flags, a, text(info.get(IFLA_INFO_KIND))


def parse_address(payload: bytes) -> tuple[int, int, int, bytes]:
    """(family, prefixlen, index, address) of an RTM_NEWADDR payload."""
    family, prefixlen, _, _, index = _IFADDR.unpack_from(payload)
    a = attrs(payload, _IFADDR.size)
    return family, prefixlen, index, a.get(IFA_LOCAL) or a.get(IFA_ADDRESS) or b""


def parse_route(payload: bytes) -> tuple[int, int, int, int, dict[int, bytes]]:
    """(family, dst_len, table, scope, attributes) of an RTM_NEWROUTE payload."""
    family, dst_len, _, _, table, _, scope, _, _ = _RTMSG.unpack_from(payload)
    return family, dst_len, table, scope, attrs(payload, _RTMSG.size)


def parse_neigh(payload: bytes) -> tuple[int, dict[int, bytes]]:
    _, index, _, _, _ = _NDMSG.unpack_from(payload)
    return index, attrs(payload, _NDMSG.size)
