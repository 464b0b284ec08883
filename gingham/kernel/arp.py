"""Gratuitous ARP, so the underlay learns at once which node now answers for an address."""

from __future__ import annotations

import ipaddress
import socket


def announce(ifname: str, mac: str, ip: str) -> None:
    """One gratuitous ARP reply (sender = target = ip) broadcast on `ifname`."""
    hw = bytes.fromhex(mac.replace(":", ""))
    addr = ipaddress.IPv4Address(ip).packed
    frame = (b"\xff" * 6 + hw + b"\x08\x06" +              # Ethernet: broadcast, from us, ARP
             b"\x00\x01\x08\x00\x06\x04\x00\x02" +          # Ethernet/IPv4, reply
             hw + addr + b"\xff" * 6 + addr)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((ifname, 0))
        s.send(frame)
