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


def test_the_event_filter_in_the_kernel_passes_what_wanted_passes(netns):
    """The classic BPF filter (ctevents.event_filter) against the Python judgment of the same
    messages read from an unfiltered socket: a connection from a skipped source sends nothing,
    another sends its new entry and the one update that says it closed, not its destroy; a UDP
    flow its new entry and its destroy."""
    from gingham.kernel.ctevents import (NF_NETLINK_CONNTRACK_DESTROY, NF_NETLINK_CONNTRACK_NEW,
                                         NF_NETLINK_CONNTRACK_UPDATE, ConntrackEvents, orig_src, parse, prefix, wanted)
    from gingham.kernel.nlsocket import NetlinkListener
    groups = NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE | NF_NETLINK_CONNTRACK_DESTROY
    ns = netns()
    # the nft command, not nft.run: libnftables' socket stays in the namespace that first used it
    subprocess.run(["ip", "netns", "exec", os.path.basename(ns), "nft", "-f", "-"], check=True, text=True,
                   input="add table ip ct-test\nadd chain ip ct-test out { type filter hook output priority 0; }\n"
                         "add rule ip ct-test out ct state new counter\n")
    with entered(ns):
        filtered, everything = ConntrackEvents(groups), NetlinkListener(groups)
        try:
            skipped = [prefix("127.0.0.2/32"), prefix("10.244.3.0/24")]
            filtered.skip(skipped)
            assert filtered.filtered
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen()
            for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
                c = socket.socket()
                c.bind((source, 0))
                c.connect(server.getsockname())
                s, _ = server.accept()
                c.sendall(b"x" * 100)
                s.recv(100)
                c.close()
                s.close()
            server.close()
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.sendto(b"x", ("127.0.0.1", 9))
            u.close()
            # deleting the entries makes their destroy events: a TCP one had closed (dropped), UDP's passes
            subprocess.run(["ip", "netns", "exec", os.path.basename(ns), "conntrack", "-D"], capture_output=True)
            import time
            time.sleep(0.2)
            passed = filtered.messages()
            judged = [m for m in everything.messages() if wanted(m[0], m[1], m[2], skipped)]
        finally:
            filtered.close()
            everything.close()
    assert passed == judged
    events = [parse(kind, payload, flags) for kind, flags, payload in passed]
    assert sorted((socket.inet_ntoa(orig_src(m[2])), e.kind, e.tcp_state, e.orig.proto)
                  for m, e in zip(passed, events)) == [
        ("127.0.0.1", "destroy", "", 17), ("127.0.0.1", "new", "", 17),
        ("127.0.0.1", "new", "SYN_SENT", 6), ("127.0.0.1", "update", "TIME_WAIT", 6),
        ("127.0.0.3", "new", "SYN_SENT", 6), ("127.0.0.3", "update", "TIME_WAIT", 6)]
