"""The lab's datastore: etcd members, each in a network namespace of its own on the underlay.

Member i lives in `gl-<lab>-etcd-<i>` at 192.168.200.(2+i), client port 2379, peer port
2380, data in the lab's state directory. Agents reach it over the underlay, as nodes on
other machines would. The lab's own commands (a process on the host) open their
connections inside a member's namespace: a socket keeps the namespace it was made in.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
from typing import Any

from ..kernel import netns
from ..sources.etcd import Connect, Etcd, EtcdError

CLIENT_PORT, PEER_PORT = 2379, 2380
# One `lab up` is one transaction: 30,000 Services are about 15 MB of JSON in one request.
MAX_TXN_OPS = 200_000
MAX_REQUEST_BYTES = 128 * 1024 * 1024


def member_ip(underlay: ipaddress.IPv4Network | ipaddress.IPv6Network, i: int) -> str:
    return str(underlay.network_address + 2 + i)


def command(name: str, ip: str, data_dir: str, initial_cluster: str, token: str) -> list[str]:
    return ["etcd", "--name", name, "--data-dir", data_dir,
            "--listen-client-urls", f"http://{ip}:{CLIENT_PORT},http://127.0.0.1:{CLIENT_PORT}",
            "--advertise-client-urls", f"http://{ip}:{CLIENT_PORT}",
            "--listen-peer-urls", f"http://{ip}:{PEER_PORT}",
            "--initial-advertise-peer-urls", f"http://{ip}:{PEER_PORT}",
            "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", token,
            "--max-txn-ops", str(MAX_TXN_OPS), "--max-request-bytes", str(MAX_REQUEST_BYTES),
            "--quota-backend-bytes", str(8 * 1024 ** 3), "--logger", "zap", "--log-level", "warn"]


def start(members: list[dict[str, Any]], state_dir: str, token: str) -> None:
    """Starts every member (`name`, `ip`, `netns` already made and wired); records `pid`."""
    initial = ",".join(f"{m['name']}=http://{m['ip']}:{PEER_PORT}" for m in members)
    for m in members:
        data = os.path.join(state_dir, m["name"])
        os.makedirs(data, exist_ok=True)
        m["dataDir"] = data
        m["pid"] = launch(m, initial, token)


def launch(m: dict[str, Any], initial: str, token: str) -> int:
    log = open(os.path.join(m["dataDir"], "..", f"{m['name']}.log"), "a")
    proc = subprocess.Popen(["nsenter", f"--net={netns.path_of(m['netns'])}",
                             *command(m["name"], m["ip"], m["dataDir"], initial, token)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    return proc.pid


def wire(member_ns: str, underlay_ns: str, ip: str, prefixlen: int, port: str) -> None:
    """The member's eth0 on the underlay bridge, and its loopback."""
    from ..kernel.links import Netlink
    ul_fd = netns.open_ns(netns.path_of(underlay_ns))
    try:
        with netns.entered(netns.path_of(member_ns)), Netlink() as nl:
            eth0 = nl.add_veth("eth0", port, ul_fd)
            nl.add_address(eth0.index, ipaddress.ip_interface(f"{ip}/{prefixlen}"))
            nl.set(eth0.index, "eth0 up", state="up")
            nl.set(nl.require("lo").index, "lo up", state="up")
    finally:
        os.close(ul_fd)
    with netns.entered(netns.path_of(underlay_ns)), Netlink() as nl:
        link = nl.require(port)
        nl.set(link.index, f"{port} on ul0", master=nl.require("ul0").index, state="up")


def connector(members: list[dict[str, Any]]) -> Connect:
    """Opens a connection to a member from the host: inside that member's namespace."""
    by_ip = {m["ip"]: m["netns"] for m in members}

    def connect(host: str, port: int, timeout: float) -> socket.socket:
        with netns.entered(netns.path_of(by_ip[host])):
            return socket.create_connection((host, port), timeout=timeout)
    return connect


def client(members: list[dict[str, Any]], timeout: float = 5.0) -> Etcd:
    return Etcd([f"{m['ip']}:{CLIENT_PORT}" for m in members], timeout, connector(members))


def wait_ready(members: list[dict[str, Any]], timeout: float = 20.0) -> Etcd:
    """A client once the cluster answers a read (it has a leader)."""
    c = client(members, timeout=2.0)
    deadline = time.monotonic() + timeout
    while True:
        try:
            c.revision()
            return client(members)
        except (EtcdError, OSError) as e:
            if time.monotonic() > deadline:
                logs = []
                for m in members:
                    try:
                        with open(os.path.join(m["dataDir"], "..", f"{m['name']}.log")) as f:
                            logs.append(f.read()[-400:])
                    except OSError:
                        pass
                raise EtcdError(f"etcd did not become ready in {timeout:.0f}s: {e}; {' '.join(logs)}") from None
            time.sleep(0.05)
