"""A netfilter netlink socket that listens: conntrack events and nfnetlink_log both read one.

A large receive buffer (forced past the namespace's limit where root may); `messages()` gives
the (type, flags, payload) of each message of every datagram waiting, without blocking (the
caller selects first, then takes the whole batch: a wakeup per event costs more than the
event), and counts an overflow (ENOBUFS: the kernel dropped what the socket could not take)
in `lost` instead of failing.
"""

from __future__ import annotations

import errno
import socket
import struct

NETLINK_NETFILTER = 12
SO_RCVBUFFORCE = 33
NLMSG_ERROR, NLMSG_DONE = 2, 3


class NetlinkListener:
    def __init__(self, groups: int = 0, rcvbuf: int = 4 << 20) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((0, groups))
        self.lost = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def messages(self, limit: int = 1024, size: int = 1 << 16) -> list[tuple[int, int, bytes]]:
        """(type, flags, payload) of the messages of the datagrams waiting, at most `limit` of them.
        `size` stays under 128 kB: Python allocates it for every recv, and larger comes from mmap
        (a system call pair per event); an event is one small message per datagram."""
        out: list[tuple[int, int, bytes]] = []
        for _ in range(limit):
            try:
                data = self.sock.recv(size, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.lost += 1
                    continue
                raise
            off = 0
            while off + 16 <= len(data):
                length, kind, flags, _, _ = struct.unpack_from("=IHHII", data, off)
                if length < 16:
                    break
                if kind not in (NLMSG_ERROR, NLMSG_DONE):
                    out.append((kind, flags, data[off + 16:off + length]))
                off += (length + 3) & ~3
        return out
