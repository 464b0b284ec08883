"""Links, addresses and routes over netlink (pyroute2), with idempotent `ensure_*` helpers.

A `Netlink` opened inside `netns.entered(path)` stays bound to that namespace. Every
pyroute2 error is turned into `NotFound`/`AlreadyExists`/`LinkError` here and nowhere else.
"""

from __future__ import annotations

import builtins  # `set` is a method of Netlink; annotations inside it need the builtin by name
import errno
import ipaddress
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError


class LinkError(Exception):
    def __init__(self, msg: str, code: int = 0) -> None:
        super().__init__(msg)
        self.code = code


class NotFound(LinkError):
    pass


class AlreadyExists(LinkError):
    pass


def _wrap(e: NetlinkError, what: str) -> LinkError:
    if e.code in (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL):
        return NotFound(f"{what}: {e.args[1] if len(e.args) > 1 else e}", e.code)
    if e.code == errno.EEXIST:
        return AlreadyExists(f"{what}: already exists", e.code)
    return LinkError(f"{what}: {e.args[1] if len(e.args) > 1 else e}", e.code)


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str
    mac: str
    mtu: int
    master: int
    up: bool
    operstate: str
    peer_netns_id: int | None = None


def _link(msg: Any) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else ""
    return Link(index=msg["index"], name=msg.get_attr("IFLA_IFNAME"), kind=kind or "",
                mac=msg.get_attr("IFLA_ADDRESS") or "", mtu=msg.get_attr("IFLA_MTU") or 0,
                master=msg.get_attr("IFLA_MASTER") or 0, up=bool(msg["flags"] & 1),
                operstate=msg.get_attr("IFLA_OPERSTATE") or "")


class Netlink:
    """One rtnetlink socket in the namespace that was current when it was opened."""

    def __init__(self) -> None:
        self.ipr = IPRoute()

    def close(self) -> None:
        self.ipr.close()

    def __enter__(self) -> "Netlink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dump(self, fn: Any, *args: Any, **kw: Any) -> list[Any]:
        for attempt in range(5):
            try:
                return list(fn(*args, **kw))
            except NetlinkDumpInterrupted:
                if attempt == 4:
                    raise
        return []

    # -- links -----------------------------------------------------------------
    # RTM_GETLINK for one name or index is answered by the kernel directly; get_links()
    # with a filter would dump and parse every link, which costs O(links) per lookup.
    def link(self, name: str) -> Link | None:
        try:
            msgs = self.ipr.link("get", ifname=name)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise _wrap(e, f"link {name}") from e
        return _link(msgs[0]) if msgs else None

    def link_by_index(self, index: int) -> Link | None:
        try:
            msgs = self.ipr.link("get", index=index)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise _wrap(e, f"link #{index}") from e
        return _link(msgs[0]) if msgs else None

    def links(self) -> list[Link]:
        return [_link(m) for m in self._dump(self.ipr.get_links)]

    def require(self, name: str) -> Link:
        link = self.link(name)
        if link is None:
            raise NotFound(f"link {name} not found")
        return link

    def _call(self, what: str, *args: Any, **kw: Any) -> Any:
        try:
            return self.ipr.link(*args, **kw)
        except NetlinkError as e:
            raise _wrap(e, what) from e

    def ensure_bridge(self, name: str, mtu: int = 0, promisc: bool = False,
                      vlan_filtering: bool = False) -> Link:
        """The bridge, made if missing; an existing non-bridge of that name is an error."""
        link = self.link(name)
        if link is None:
            kw: dict[str, Any] = {"ifname": name, "kind": "bridge"}
            if mtu:
                kw["mtu"] = mtu
            try:
                self._call(f"create bridge {name}", "add", **kw)
            except AlreadyExists:
                pass  # another plugin call made it between our look and our add
            link = self.require(name)
        if link.kind != "bridge":
            raise LinkError(f"{name!r} already exists but is not a bridge (it is a {link.kind or 'device'})")
        if vlan_filtering:
            subprocess.run(["ip", "link", "set", name, "type", "bridge", "vlan_filtering", "1"],
                           check=True, capture_output=True)
        if promisc:
            self._call(f"set {name} promisc", "set", index=link.index, flags=0x100, change=0x100)
        if not link.up:
            self._call(f"bring {name} up", "set", index=link.index, state="up")
        elif not promisc and not vlan_filtering:
            return link  # the common case, a bridge that exists and is up: no second lookup
        return self.require(name)

    def add_veth(self, name: str, peer: str, peer_ns_fd: int, mtu: int = 0, peer_mac: str = "") -> Link:
        peer_spec: dict[str, Any] = {"ifname": peer, "net_ns_fd": peer_ns_fd}
        kw: dict[str, Any] = {"ifname": name, "kind": "veth", "peer": peer_spec}
        if mtu:
            kw["mtu"] = mtu
            peer_spec["mtu"] = mtu
        if peer_mac:
            peer_spec["address"] = peer_mac
        self._call(f"create veth {name}/{peer}", "add", **kw)
        return self.require(name)

    def set(self, index: int, what: str, **kw: Any) -> None:
        self._call(what, "set", index=index, **kw)

    def delete(self, name: str) -> bool:
        """Removes a link; returns False when it was already gone."""
        link = self.link(name)
        if link is None:
            return False
        try:
            self._call(f"delete {name}", "del", index=link.index)
        except NotFound:
            return False
        return True

    def set_hairpin(self, index: int, on: bool) -> None:
        try:
            self.ipr.brport("set", index=index, mode=1 if on else 0)
        except NetlinkError as e:
            raise _wrap(e, "set hairpin mode") from e

    def add_port_vlan(self, name: str, vid: int) -> None:
        subprocess.run(["bridge", "vlan", "del", "dev", name, "vid", "1"], capture_output=True)
        subprocess.run(["bridge", "vlan", "add", "dev", name, "vid", str(vid), "pvid", "untagged"],
                       check=True, capture_output=True)

    def wait_oper_up(self, index: int, timeout: float = 2.5) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            link = self.link_by_index(index)
            if link is not None and link.operstate in ("UP", "UNKNOWN"):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    # -- addresses -------------------------------------------------------------
    def addresses(self, index: int) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        out = []
        for m in self._dump(self.ipr.get_addr, index=index):
            out.append(ipaddress.ip_interface(f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}"))
        return out

    def add_address(self, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
                    nodad: bool = False) -> None:
        kw: dict[str, Any] = {"index": index, "address": str(iface.ip), "prefixlen": iface.network.prefixlen}
        if iface.version == 6 and nodad:
            kw["flags"] = 0x02  # IFA_F_NODAD
        try:
            self.ipr.addr("add", **kw)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise _wrap(e, f"add address {iface}") from e

    def del_address(self, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
        try:
            self.ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except NetlinkError as e:
            if e.code not in (errno.EADDRNOTAVAIL, errno.ENOENT):
                raise _wrap(e, f"delete address {iface}") from e

    # -- routes ----------------------------------------------------------------
    def add_route(self, dst: str, index: int, gw: str | None = None, scope: int | None = None,
                  table: int | None = None, priority: int | None = None, mtu: int | None = None,
                  onlink: bool = False, replace: bool = False) -> None:
        net = ipaddress.ip_network(dst, strict=False)
        kw: dict[str, Any] = {"dst": str(net), "oif": index, "family": 2 if net.version == 4 else 10}
        if gw:
            kw["gateway"] = gw
        if scope is not None:
            kw["scope"] = scope
        if table:
            kw["table"] = table
        if priority:
            kw["priority"] = priority
        if mtu:
            kw["metrics"] = {"attrs": [["RTAX_MTU", mtu]]}
        if onlink:
            kw["flags"] = 4  # RTNH_F_ONLINK
        try:
            self.ipr.route("replace" if replace else "add", **kw)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise _wrap(e, f"add route {dst}" + (f" via {gw}" if gw else "")) from e

    def del_route(self, dst: str, index: int | None = None, gw: str | None = None) -> bool:
        net = ipaddress.ip_network(dst, strict=False)
        kw: dict[str, Any] = {"dst": str(net), "family": 2 if net.version == 4 else 10}
        if index:
            kw["oif"] = index
        if gw:
            kw["gateway"] = gw
        try:
            self.ipr.route("del", **kw)
            return True
        except NetlinkError as e:
            if e.code in (errno.ESRCH, errno.ENOENT):
                return False
            raise _wrap(e, f"delete route {dst}") from e

    def routes(self, family: int = 2, table: int = 254) -> Iterator[dict[str, Any]]:
        for m in self._dump(self.ipr.get_routes, family=family, table=table):
            dst = m.get_attr("RTA_DST")
            yield {"dst": f"{dst}/{m['dst_len']}" if dst else ("0.0.0.0/0" if family == 2 else "::/0"),
                   "gw": m.get_attr("RTA_GATEWAY"), "oif": m.get_attr("RTA_OIF"),
                   "scope": m["scope"], "table": m.get_attr("RTA_TABLE") or m["table"]}

    # -- neighbours and fdb (the overlay's entries) -----------------------------
    def ensure_vxlan(self, name: str, vni: int, local: str, port: int, uplink: int, mac: str, mtu: int) -> Link:
        """A VXLAN device with learning off; an existing one with other parameters is recreated."""
        link = self.link(name)
        if link is not None and (link.kind != "vxlan" or link.mac != mac):
            self.delete(name)
            link = None
        if link is None:
            self._call(f"create vxlan {name}", "add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_local=local,
                       vxlan_port=port, vxlan_learning=0, vxlan_link=uplink, address=mac, mtu=mtu,
                       vxlan_udp_csum=0)
            link = self.require(name)
        if not link.up:
            self.set(link.index, f"bring {name} up", state="up")
        return self.require(name)

    def neigh_replace(self, index: int, ip: str, mac: str) -> None:
        try:
            self.ipr.neigh("replace", ifindex=index, dst=ip, lladdr=mac, state=0x80)  # NUD_PERMANENT
        except NetlinkError as e:
            raise _wrap(e, f"neighbour {ip}") from e

    def fdb_entries(self, index: int) -> builtins.set[tuple[str, str]]:
        out: builtins.set[tuple[str, str]] = builtins.set()
        for m in self._dump(self.ipr.fdb, "dump", ifindex=index):
            if m.get("ifindex") == index and m.get_attr("NDA_DST"):
                out.add((m.get_attr("NDA_LLADDR"), m.get_attr("NDA_DST")))
        return out

    def fdb_add(self, index: int, mac: str, dst_ip: str) -> None:
        try:
            self.ipr.fdb("append", ifindex=index, lladdr=mac, dst=dst_ip)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise _wrap(e, f"fdb {mac} -> {dst_ip}") from e

    def fdb_del(self, index: int, mac: str, dst_ip: str) -> None:
        try:
            self.ipr.fdb("del", ifindex=index, lladdr=mac, dst=dst_ip)
        except NetlinkError as e:
            if e.code not in (errno.ENOENT, errno.ESRCH):
                raise _wrap(e, f"fdb {mac} -> {dst_ip}") from e
