"""Conntrack's NEW and DESTROY events over ctnetlink multicast (what `conntrack -E` reads).

A DESTROY event carries the entry's packet and byte counters (with `nf_conntrack_acct` on in
the namespace) and its start and stop times (with `nf_conntrack_timestamp` on), so one event
at each end of a connection is all a flow record needs. `enable_accounting()` turns both on
(per network namespace). The socket's buffer is large; when the kernel still overflows it,
`read()` reports how many events were lost (ENOBUFS) instead of failing.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

from . import sysctl
from .conntrack import CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET, NETLINK_NETFILTER, Tuple, _msg
from .nlsocket import NetlinkListener
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


@dataclass(frozen=True)
class CtEvent:
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


def parse(kind: int, payload: bytes, flags: int = NLM_F_CREATE) -> CtEvent | None:
    """One ctnetlink message (its payload after the netlink header) as an event; None for others.
    A CT_NEW message is a new entry with NLM_F_CREATE, an update without."""
    msg = kind & 0xFF
    if msg not in (IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_DELETE) or len(payload) < 4:
        return None
    a = attrs(payload, 4)
    if CTA_TUPLE_ORIG not in a or CTA_TUPLE_REPLY not in a:
        return None
    orig, reply = _counters(a.get(CTA_COUNTERS_ORIG)), _counters(a.get(CTA_COUNTERS_REPLY))
    ts = attrs(a[CTA_TIMESTAMP]) if CTA_TIMESTAMP in a else {}
    tcp = attrs(attrs(a[CTA_PROTOINFO]).get(CTA_PROTOINFO_TCP, b"")) if CTA_PROTOINFO in a else {}
    state = tcp.get(CTA_PROTOINFO_TCP_STATE, b"")
    kind_name = "destroy" if msg == IPCTNL_MSG_CT_DELETE else "new" if flags & NLM_F_CREATE else "update"
    return CtEvent(kind_name,
                   struct.unpack("!I", a[CTA_ID])[0] if CTA_ID in a else 0,
                   Tuple(a[CTA_TUPLE_ORIG]), Tuple(a[CTA_TUPLE_REPLY]),
                   struct.unpack("!I", a[CTA_STATUS])[0] if CTA_STATUS in a else 0,
                   (orig[0], reply[0]), (orig[1], reply[1]),
                   struct.unpack("!Q", ts[CTA_TIMESTAMP_START])[0] if CTA_TIMESTAMP_START in ts else 0,
                   struct.unpack("!Q", ts[CTA_TIMESTAMP_STOP])[0] if CTA_TIMESTAMP_STOP in ts else 0,
                   TCP_STATES[state[0]] if state and state[0] < len(TCP_STATES) else "")


class Lookup:
    """Entries read by their original tuple (`conntrack -G`), over one socket kept open."""

    def __init__(self) -> None:
        self.nl = Rtnl(NETLINK_NETFILTER)

    def close(self) -> None:
        self.nl.close()

    def __call__(self, orig: Tuple) -> CtEvent | None:
        """The entry as the table holds it now: its counters so far, which an update event does
        not carry; None when it is gone."""
        try:
            got = self.nl.request(_msg(IPCTNL_MSG_CT_GET), struct.pack("=BBH", socket.AF_INET, 0, 0) +
                                  attr(CTA_TUPLE_ORIG | NLA_F_NESTED, orig.raw))
        except RtnlError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        return parse(IPCTNL_MSG_CT_NEW, got[0], 0) if got else None


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


def wanted(kind: int, flags: int, payload: bytes, skip_ids: set[int],
           skip_sources: frozenset[bytes] = frozenset()) -> bool:
    """Whether a message is worth parsing: every new entry; an update only when a TCP connection
    closes (TIME_WAIT or CLOSE); a destroy unless its id is in `skip_ids` (its end was recorded at
    the close), which it leaves."""
    msg = kind & 0xFF
    if skip_sources and orig_src(payload) in skip_sources:
        return False  # a connection another node records (its source is that node's pod or the node)
    if msg == IPCTNL_MSG_CT_NEW:
        if flags & NLM_F_CREATE:
            return True
        info = _find(payload, 4, CTA_PROTOINFO)
        tcp = _find(info, 0, CTA_PROTOINFO_TCP) if info else None
        state = _find(tcp, 0, CTA_PROTOINFO_TCP_STATE) if tcp else None
        return bool(state) and state[0] in (7, 8)  # type: ignore[index]
    if msg == IPCTNL_MSG_CT_DELETE and skip_ids:
        raw = _find(payload, 4, CTA_ID)
        if raw is not None:
            cid = struct.unpack("!I", raw)[0]
            if cid in skip_ids:
                skip_ids.discard(cid)
                return False
    return True


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def update_filter() -> bytes:
    """A classic BPF socket filter that lets the kernel drop the updates `wanted` would skip: a
    conntrack CT_NEW message without NLM_F_CREATE passes only when its TCP state is TIME_WAIT or
    CLOSE (found with the netlink attribute helpers SKF_AD_NLATTR and SKF_AD_NLATTR_NEST); every
    other message passes. Loads are big-endian, so the little-endian type 0x0100 reads 0x0001
    and the flag NLM_F_CREATE (0x400) reads 0x0004."""
    nlattr, nest = -0x1000 + 12, -0x1000 + 16
    ld_h, ld_imm, ldx_imm, ld_w, jeq, jset, tax, ld_b_ind, ret = 0x28, 0x00, 0x01, 0x20, 0x15, 0x45, 0x07, 0x50, 0x06
    prog: list[tuple[int, str | None, str | None, int]] = [
        (ld_h, None, None, 4),                 # the message type
        (jeq, None, "accept", 0x0001),         # not CT_NEW (a destroy): pass
        (ld_h, None, None, 6),                 # its flags
        (jset, "accept", None, 0x0004),        # NLM_F_CREATE: a new entry, pass
        (ld_imm, None, None, 20),              # A: where the attributes start (after nlmsghdr, nfgenmsg)
        (ldx_imm, None, None, CTA_PROTOINFO),
        (ld_w, None, None, nlattr),            # A = offset of CTA_PROTOINFO, 0 if none
        (jeq, "drop", None, 0),
        (ldx_imm, None, None, CTA_PROTOINFO_TCP),
        (ld_w, None, None, nest),              # A = offset of CTA_PROTOINFO_TCP inside it
        (jeq, "drop", None, 0),
        (ldx_imm, None, None, CTA_PROTOINFO_TCP_STATE),
        (ld_w, None, None, nest),              # A = offset of the state attribute
        (jeq, "drop", None, 0),
        (tax, None, None, 0),
        (ld_b_ind, None, None, 4),             # the state byte, after the attribute header
        (jeq, "accept", None, 7),              # TIME_WAIT
        (jeq, "accept", "drop", 8),            # CLOSE
    ]
    labels = {"drop": len(prog), "accept": len(prog) + 1}
    out = [_insn(code, labels[jt] - i - 1 if jt else 0, labels[jf] - i - 1 if jf else 0, k)
           for i, (code, jt, jf, k) in enumerate(prog)]
    out += [_insn(ret, 0, 0, 0), _insn(ret, 0, 0, 0x40000)]  # drop, accept
    return b"".join(out)


def attach(sock: "socket.socket", prog: bytes) -> None:
    """SO_ATTACH_FILTER with a classic BPF program (struct sock_fprog points at it)."""
    import ctypes
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HxxxxxxQ", len(prog) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER copies the program


class ConntrackEvents(NetlinkListener):
    def __init__(self, groups: int = NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_DESTROY,
                 rcvbuf: int = 8 << 20) -> None:
        super().__init__(groups, rcvbuf)
        self.filtered = False
        if groups & NF_NETLINK_CONNTRACK_UPDATE:
            try:  # the kernel drops most updates; `wanted` still judges whatever passes
                attach(self.sock, update_filter())
                self.filtered = True
            except OSError:
                pass

    def read(self, skip_ids: set[int] | None = None, skip_sources: frozenset[bytes] = frozenset()) -> list[CtEvent]:
        """The events of one datagram worth parsing (`wanted`; blocks until one comes); [] after an
        overflow, counted in `lost`."""
        out = []
        for kind, flags, payload in self.messages(1 << 16):
            if wanted(kind, flags, payload, skip_ids if skip_ids is not None else set(), skip_sources):
                ev = parse(kind, payload, flags)
                if ev is not None:
                    out.append(ev)
        return out
