"""Packets an nft `log group N` statement sends to userspace, read over nfnetlink_log.

The reader binds one group (NFULNL_CFG_CMD_BIND) and asks for the first bytes of each packet
(enough for the IPv4 and transport headers); each message gives the rule's log prefix, the
time, the input interface and those headers. The kernel queues a burst and drops what the
socket cannot take; `read()` then counts the loss instead of failing.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

from .nlsocket import NetlinkListener
from .rtnl import attrs

NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_CFG_CMD, NFULA_CFG_MODE = 1, 2
NFULNL_CFG_CMD_BIND, NFULNL_CFG_CMD_UNBIND, NFULNL_CFG_CMD_PF_BIND = 1, 2, 3
NFULNL_COPY_PACKET = 2
NFULA_PACKET_HDR, NFULA_TIMESTAMP, NFULA_IFINDEX_INDEV, NFULA_PAYLOAD, NFULA_PREFIX = 1, 3, 4, 9, 10
NLM_F_REQUEST, NLM_F_ACK = 1, 4
COPY = 64  # bytes of each packet: an IPv4 header with options and the ports


@dataclass(frozen=True)
class Logged:
    prefix: str
    time: float           # seconds since the epoch
    indev: int
    src: str
    dst: str
    proto: int            # 6 TCP, 17 UDP, 132 SCTP, 1 ICMP
    sport: int
    dport: int
    length: int           # the packet's total length (IPv4 header)


def _attr(kind: int, data: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(data), kind) + data + b"\0" * (-len(data) & 3)


def parse_packet(payload: bytes) -> Logged | None:
    """One NFULNL_MSG_PACKET (its payload after the netlink header); None if it is not IPv4."""
    a = attrs(payload, 4)
    pkt = a.get(NFULA_PAYLOAD, b"")
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return None
    ihl = (pkt[0] & 0xF) * 4
    proto = pkt[9]
    sport = dport = 0
    if proto in (6, 17, 132) and len(pkt) >= ihl + 4:
        sport, dport = struct.unpack_from("!HH", pkt, ihl)
    t = 0.0
    if NFULA_TIMESTAMP in a and len(a[NFULA_TIMESTAMP]) == 16:
        sec, usec = struct.unpack("!QQ", a[NFULA_TIMESTAMP])
        t = sec + usec / 1e6
    prefix = a.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode(errors="replace")
    indev = struct.unpack("!I", a[NFULA_IFINDEX_INDEV])[0] if NFULA_IFINDEX_INDEV in a else 0
    return Logged(prefix, t, indev, socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20]), proto, sport, dport,
                  struct.unpack_from("!H", pkt, 2)[0])


class NflogReader(NetlinkListener):
    def __init__(self, group: int, rcvbuf: int = 4 << 20) -> None:
        super().__init__(0, rcvbuf)
        self.group = group
        self.seq = 0
        self._config(socket.AF_INET, 0, _attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_PF_BIND])))
        self._config(socket.AF_UNSPEC, group, _attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])))
        self._config(socket.AF_UNSPEC, group, _attr(NFULA_CFG_MODE, struct.pack("!IBB", COPY, NFULNL_COPY_PACKET, 0)))

    def _config(self, family: int, res_id: int, body: bytes) -> None:
        """One configuration request, acknowledged (an error answer raises OSError)."""
        self.seq += 1
        msg = struct.pack("=BBH", family, 0, socket.htons(res_id)) + body
        kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
        self.sock.send(struct.pack("=IHHII", 16 + len(msg), kind, NLM_F_REQUEST | NLM_F_ACK, self.seq, 0) + msg)
        while True:
            data = self.sock.recv(65536)
            length, mtype, _, seq, _ = struct.unpack_from("=IHHII", data, 0)
            if mtype == 2 and seq == self.seq:  # NLMSG_ERROR: 0 is the acknowledgement
                code = struct.unpack_from("=i", data, 16)[0]
                if code:
                    raise OSError(-code, f"nfnetlink_log: configuring group {self.group}: {errno.errorcode.get(-code)}")
                return

    def close(self) -> None:
        try:
            self._config(socket.AF_UNSPEC, self.group, _attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_UNBIND])))
        except OSError:
            pass
        super().close()

    def read(self) -> list[Logged]:
        """The packets waiting (none after an overflow, counted in `lost`)."""
        out = []
        for kind, _, payload in self.messages():
            if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
                got = parse_packet(payload)
                if got is not None:
                    out.append(got)
        return out


__all__ = ["Logged", "NflogReader", "parse_packet"]
