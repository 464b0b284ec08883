"""kernel/conntrack.py against the kernel's table, with the conntrack tool as the oracle."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from gingham.kernel import conntrack, nft
from gingham.kernel.netns import entered

pytestmark = pytest.mark.root


def entries(ns: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", os.path.basename(ns), "conntrack", "-L", "-p", "udp"],
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def test_udp_flows_are_deleted_by_port_and_by_reply_source(netns):
    ns = netns()
    with entered(ns):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        nft.run("add table ip ct-test\nadd chain ip ct-test out { type filter hook output priority 0; }\n"
                "add rule ip ct-test out ct state new counter\n")  # conntrack on in this namespace
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for port in (5001, 5002, 5003):
            s.sendto(b"x", ("127.0.0.1", port))
        s.close()
    assert len(entries(ns)) == 3
    with entered(ns):
        assert conntrack.delete_udp_to_port(5002) == 1
    left = entries(ns)
    assert len(left) == 2 and not any("dport=5002" in e for e in left)
    with entered(ns):
        assert conntrack.delete_udp_from("127.0.0.1") == 2  # the replies would come from there
        assert conntrack.delete_udp_to_port(5002) == 0      # nothing left to delete is no error
    assert entries(ns) == []
