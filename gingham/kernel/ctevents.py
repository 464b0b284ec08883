"""Conntrack's NEW and DESTROY events over ctnetlink multicast (what `conntrack -E` reads).

A DESTROY event carries the entry's packet and byte counters (with `nf_conntrack_acct` on in
the namespace) and its start and stop times (with `nf_conntrack_timestamp` on), so one event
at each end of a connection is all a flow record needs. `enable_accounting()` turns both on
(per network namespace). The socket's buffer is large; when the kernel still overflows it,
`read()` reports how many events were lost (ENOBUFS) instead of failing.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Sequence
from typing import NamedTuple

from . import sysctl
from .conntrack import CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET, NETLINK_NETFILTER, Tuple, _msg
from .nlsocket import SO_RCVBUFFORCE, NetlinkListener
from .rtnl import NLA_F_NESTED, Rtnl, RtnlError, attr, attrs

NF_NETLINK_CONNTRACK_NEW, NF_NETLINK_CONNTRACK_UPDATE, NF_NETLINK_CONNTRACK_DESTROY = 0x1, 0x2, 0x4
IPCTNL_MSG_CT_NEW = 0
CTA_STATUS, CTA_MARK, CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY, CTA_ID, CTA_TIMESTAMP = 3, 8, 9, 10, 12, 20
CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES = 1, 2
CTA_TIMESTAMP_START, CTA_TIMESTAMP_STOP = 1, 2
CTA_PROTOINFO, CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE = 4, 1, 1
TCP_STATES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT",
              "CLOSE", "SYN_SENT2")
NLM_F_CREATE = 0x400
IPS_SRC_NAT, IPS_DST_NAT = 0x10, 0x20


class CtEvent(NamedTuple):  # a named tuple: made for every event, and a frozen dataclass costs more to make
    kind: str             # "new", "update" (a state change) or "destroy"
    id: int
    orig: Tuple           # as the client sent it (the Service address before DNAT)
    reply: Tuple          # as the server answers (the endpoint after DNAT)
    status: int
    packets: tuple[int, int] = (0, 0)  # original, reply direction
    bytes: tuple[int, int] = (0, 0)
    start_ns: int = 0
    stop_ns: int = 0
    tcp_state: str = ""

    @property
    def dnat(self) -> bool:
        return bool(self.status & IPS_DST_NAT)


class Counters(NamedTuple):
    packets: int   # both directions
    bytes: int
    start_ns: int  # when the entry was made (0 without nf_conntrack_timestamp)


def enable_accounting() -> None:
    """Counters and timestamps on every entry of this namespace (conntrack -L -o extended shows them)."""
    sysctl.write("net.netfilter.nf_conntrack_acct", 1)
    sysctl.write("net.netfilter.nf_conntrack_timestamp", 1)


def _counters(raw: bytes | None) -> tuple[int, int]:
    if not raw:
        return 0, 0
    a = attrs(raw)
    return (struct.unpack("!Q", a[CTA_COUNTERS_PACKETS])[0] if CTA_COUNTERS_PACKETS in a else 0,
            struct.unpack("!Q", a[CTA_COUNTERS_BYTES])[0] if CTA_COUNTERS_BYTES in a else 0)


_U32, _U64 = struct.Struct("!I"), struct.Struct("!Q")


def parse(kind: int, payload: bytes, flags: int = NLM_F_CREATE) -> CtEvent | None:
    """One ctnetlink message (its payload after the netlink header) as an event; None for others.
    A CT_NEW message is a new entry with NLM_F_CREATE, an update without. The nested attributes
    only a destroy carries (counters, timestamps) are read only when there."""
    msg = kind & 0xFF
    if msg not in (IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_DELETE) or len(payload) < 4:
        return None
    a = attrs(payload, 4)
    o, r = a.get(CTA_TUPLE_ORIG), a.get(CTA_TUPLE_REPLY)
    if o is None or r is None:
        return None
    status, cid, info = a.get(CTA_STATUS), a.get(CTA_ID), a.get(CTA_PROTOINFO)
    state = b""
    if info is not None:
        tcp = _find(info, 0, CTA_PROTOINFO_TCP)
        state = (_find(tcp, 0, CTA_PROTOINFO_TCP_STATE) if tcp else None) or b""
    packets = nbytes = (0, 0)
    start = stop = 0
    if msg == IPCTNL_MSG_CT_DELETE:
        orig, reply = _counters(a.get(CTA_COUNTERS_ORIG)), _counters(a.get(CTA_COUNTERS_REPLY))
        packets, nbytes = (orig[0], reply[0]), (orig[1], reply[1])
        ts = attrs(a[CTA_TIMESTAMP]) if CTA_TIMESTAMP in a else {}
        start = _U64.unpack(ts[CTA_TIMESTAMP_START])[0] if CTA_TIMESTAMP_START in ts else 0
        stop = _U64.unpack(ts[CTA_TIMESTAMP_STOP])[0] if CTA_TIMESTAMP_STOP in ts else 0
    kind_name = "destroy" if msg == IPCTNL_MSG_CT_DELETE else "new" if flags & NLM_F_CREATE else "update"
    return CtEvent(kind_name, _U32.unpack(cid)[0] if cid else 0, Tuple(o), Tuple(r),
                   _U32.unpack(status)[0] if status else 0, packets, nbytes, start, stop,
                   TCP_STATES[state[0]] if state and state[0] < len(TCP_STATES) else "")


class Lookup:
    """Entries read by their original tuple (`conntrack -G`), over one socket kept open."""

    BATCH = 100  # requests per write: their answers take a page or two of the socket's buffer each
    RCVBUF = 4 << 20

    def __init__(self) -> None:
        self.nl = Rtnl(NETLINK_NETFILTER)
        try:
            self.nl.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.RCVBUF)
        except OSError:
            self.nl.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RCVBUF)

    def close(self) -> None:
        self.nl.close()

    def counters(self, origs: list[Tuple]) -> list[Counters | None]:
        """Many entries' counters so far (packets and bytes, both directions summed) and start
        time, read in batches of gets (Rtnl.get_many); None for an entry that is gone."""
        nfgen = struct.pack("=BBH", socket.AF_INET, 0, 0)
        out: list[Counters | None] = []
        for at in range(0, len(origs), self.BATCH):
            answers = self.nl.get_many(_msg(IPCTNL_MSG_CT_GET), [nfgen + attr(CTA_TUPLE_ORIG | NLA_F_NESTED, o.raw)
                                                                 for o in origs[at:at + self.BATCH]])
            for got in answers:
                if isinstance(got, int):
                    if got not in (errno.ENOENT, errno.ETIMEDOUT, errno.ENOBUFS):
                        raise RtnlError(got, os.strerror(got))
                    out.append(None)
                    continue
                a = attrs(got, 4)
                orig, reply = _counters(a.get(CTA_COUNTERS_ORIG)), _counters(a.get(CTA_COUNTERS_REPLY))
                ts = attrs(a[CTA_TIMESTAMP]) if CTA_TIMESTAMP in a else {}
                out.append(Counters(orig[0] + reply[0], orig[1] + reply[1],
                                    struct.unpack("!Q", ts[CTA_TIMESTAMP_START])[0] if CTA_TIMESTAMP_START in ts else 0))
        return out


def _find(data: bytes, offset: int, want: int) -> bytes | None:
    """One attribute's payload, scanning without building a dict (the hot path skips most messages)."""
    end = len(data)
    while offset + 4 <= end:
        n, kind = struct.unpack_from("=HH", data, offset)
        if n < 4:
            return None
        if kind & 0x3FFF == want:
            return data[offset + 4:offset + n]
        offset += (n + 3) & ~3
    return None


def orig_src(payload: bytes) -> bytes | None:
    """The original direction's IPv4 source address, as 4 bytes, found without parsing the rest."""
    orig = _find(payload, 4, CTA_TUPLE_ORIG)
    ip = _find(orig, 0, 1) if orig else None  # CTA_TUPLE_IP
    return _find(ip, 0, 1) if ip else None    # CTA_IP_V4_SRC


Prefix = tuple[int, int]  # an IPv4 network and its mask, as numbers


def prefix(cidr: str) -> Prefix:
    net = ipaddress.ip_network(cidr, strict=False)
    return int(net.network_address), int(net.netmask)


def within(src: bytes | None, prefixes: Sequence[Prefix]) -> bool:
    if src is None or len(src) != 4:
        return False
    n = int.from_bytes(src, "big")
    return any(n & mask == net for net, mask in prefixes)


def _tcp_state(payload: bytes) -> int | None:
    info = _find(payload, 4, CTA_PROTOINFO)
    tcp = _find(info, 0, CTA_PROTOINFO_TCP) if info else None
    state = _find(tcp, 0, CTA_PROTOINFO_TCP_STATE) if tcp else None
    return state[0] if state else None


CLOSING = (7, 8)  # TIME_WAIT, CLOSE


def wanted(kind: int, flags: int, payload: bytes, skip_sources: Sequence[Prefix] = (), filtered: bool = False) -> bool:
    """Whether a message is worth parsing (`event_filter` judges the same in the kernel; with
    `filtered`, it already did but for `skip_sources`): not when its original source is in
    `skip_sources`; every new entry; an update only when a TCP connection closes (TIME_WAIT or
    CLOSE); a destroy unless it is of a TCP connection that had closed (its end was recorded at
    the close: the entry only lingered in TIME_WAIT)."""
    msg = kind & 0xFF
    if skip_sources and within(orig_src(payload), skip_sources):
        return False
    if filtered:
        return True
    if msg == IPCTNL_MSG_CT_NEW:
        return bool(flags & NLM_F_CREATE) or _tcp_state(payload) in CLOSING
    if msg == IPCTNL_MSG_CT_DELETE:
        return _tcp_state(payload) not in CLOSING
    return True


MAX_PREFIXES = 1000  # 4 instructions each; classic BPF takes 4,096


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def event_filter(skip_sources: Sequence[Prefix] = ()) -> bytes:
    """A classic BPF socket filter that lets the kernel drop what `wanted` would skip, before
    anything wakes up: a message whose original source is in one of `skip_sources` (found with
    the netlink attribute helpers SKF_AD_NLATTR and SKF_AD_NLATTR_NEST: CTA_TUPLE_ORIG,
    CTA_TUPLE_IP, CTA_IP_V4_SRC); and a conntrack CT_NEW message without NLM_F_CREATE (an
    update) unless its TCP state is TIME_WAIT or CLOSE. Everything else passes. Loads are
    big-endian: the address reads as its number, the little-endian type 0x0100 reads 0x0001 and
    the flag NLM_F_CREATE (0x400) reads 0x0004. A destroy of a TCP connection that had closed is
    dropped too (its end was recorded at the close). Jumps are relative and 8 bits wide, so each
    prefix test returns by itself and a missing attribute jumps past them with `ja`."""
    if len(skip_sources) > MAX_PREFIXES:
        skip_sources = ()  # too long for one program: `wanted` judges them in Python
    nlattr, nest = -0x1000 + 12, -0x1000 + 16
    ld_h, ld_imm, ldx_imm, ld_w, jeq, jset, tax, ld_b_ind, ret = 0x28, 0x00, 0x01, 0x20, 0x15, 0x45, 0x07, 0x50, 0x06
    ld_w_ind, and_k, ja = 0x40, 0x54, 0x05
    Insn = tuple[int, str | int | None, str | int | None, int | str]  # code, jump if true, if false, k
    prog: list[Insn | str] = []  # a string: the label of the next instruction
    if skip_sources:
        prog += [(ld_imm, None, None, 20)]         # A: where the attributes start (after nlmsghdr, nfgenmsg)
        for kind, how in ((CTA_TUPLE_ORIG, nlattr), (1, nest), (1, nest)):  # the tuple, its IPs, the source
            prog += [(ldx_imm, None, None, kind), (ld_w, None, None, how),
                     (jeq, 0, 1, 0), (ja, None, None, "updates")]  # not there: on to the update test
        prog += [(tax, None, None, 0)]             # X: the source attribute's offset
        for net, mask in skip_sources:
            prog += [(ld_w_ind, None, None, 4), (and_k, None, None, mask), (jeq, 0, 1, net), (ret, None, None, 0)]
    def state_to_a(missing: str) -> list[Insn | str]:
        """A = the TCP state byte of the message (jumps to `missing` when it has none)."""
        return [(ld_imm, None, None, 20),
                (ldx_imm, None, None, CTA_PROTOINFO),
                (ld_w, None, None, nlattr),    # A = offset of CTA_PROTOINFO, 0 if none
                (jeq, missing, None, 0),
                (ldx_imm, None, None, CTA_PROTOINFO_TCP),
                (ld_w, None, None, nest),      # A = offset of CTA_PROTOINFO_TCP inside it
                (jeq, missing, None, 0),
                (ldx_imm, None, None, CTA_PROTOINFO_TCP_STATE),
                (ld_w, None, None, nest),      # A = offset of the state attribute
                (jeq, missing, None, 0),
                (tax, None, None, 0),
                (ld_b_ind, None, None, 4)]     # the state byte, after the attribute header
    prog += ["updates",
             (ld_h, None, None, 4),                       # the message type
             (jeq, "destroy", None, 0x0201),              # CT_DELETE
             (jeq, None, "accept", 0x0001),               # not CT_NEW either: pass
             (ld_h, None, None, 6),                       # its flags
             (jset, "accept", None, 0x0004),              # NLM_F_CREATE: a new entry, pass
             *state_to_a("drop"),
             (jeq, "accept", None, 7),                    # TIME_WAIT
             (jeq, "accept", "drop", 8),                  # CLOSE
             "destroy",
             *state_to_a("accept"),                       # not TCP: its end, pass
             (jeq, "drop", None, 7),                      # a TCP connection recorded at its close
             (jeq, "drop", "accept", 8),
             "drop", (ret, None, None, 0),
             "accept", (ret, None, None, 0x40000)]
    labels: dict[str, int] = {}
    insns: list[Insn] = []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)

    def rel(i: int, to: str | int | None) -> int:
        return to if isinstance(to, int) else labels[to] - i - 1 if to else 0
    return b"".join(_insn(code, rel(i, jt), rel(i, jf), rel(i, k) if isinstance(k, str) else k)
                    for i, (code, jt, jf, k) in enumerate(insns))


def attach(sock: "socket.socket", prog: bytes) -> None:
    """SO_ATTACH_FILTER with a classic BPF program (struct sock_fprog points at it); a second
    attach replaces the first."""
    import ctypes
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HxxxxxxQ", len(prog) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER copies the program


class ConntrackEvents(NetlinkListener):
    def __init__(self, groups: int = NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_DESTROY,
                 rcvbuf: int = 8 << 20) -> None:
        super().__init__(groups, rcvbuf)
        self.filtered = False
        self.skip_sources: tuple[Prefix, ...] = ()
        self.python_sources: tuple[Prefix, ...] = ()
        if groups & NF_NETLINK_CONNTRACK_UPDATE:
            self._attach()

    def _attach(self) -> None:
        try:  # the kernel drops most messages; `wanted` still judges whatever passes
            attach(self.sock, event_filter(self.skip_sources))
            self.filtered = True
        except OSError:
            self.filtered = False
        # the sources the kernel does not judge, Python does
        in_kernel = self.filtered and len(self.skip_sources) <= MAX_PREFIXES
        self.python_sources = () if in_kernel else self.skip_sources

    def skip(self, sources: Sequence[Prefix]) -> None:
        """Drops, from now on, messages whose original source is in one of `sources`."""
        if tuple(sources) != self.skip_sources:
            self.skip_sources = tuple(sources)
            self._attach()

    def read(self) -> list[CtEvent]:
        """The events waiting that are worth parsing (`wanted`); none after an overflow, counted
        in `lost`."""
        out = []
        for kind, flags, payload in self.messages():
            if wanted(kind, flags, payload, self.python_sources, self.filtered):
                ev = parse(kind, payload, flags)
                if ev is not None:
                    out.append(ev)
        return out
