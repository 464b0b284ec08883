"""sysctl writes through /proc/sys, which shows the caller's current netns."""

from __future__ import annotations

import os


def path(name: str) -> str:
    return os.path.join("/proc/sys", name.replace(".", "/"))


def write(name: str, value: str | int) -> None:
    with open(path(name), "w") as f:
        f.write(str(value))


def read(name: str) -> str:
    with open(path(name)) as f:
        return f.read().strip()


def write_iface(family: int, ifname: str, key: str, value: str | int) -> None:
    """net.ipv4.conf.<ifname>.<key>; the name is written with dots kept (veth names may hold them)."""
    fam = "ipv4" if family == 4 else "ipv6"
    with open(os.path.join("/proc/sys/net", fam, "conf", ifname, key), "w") as f:
        f.write(str(value))
