"""Links, addresses and routes over rtnetlink (kernel.rtnl), with idempotent `ensure_*` helpers.

A `Netlink` opened inside `netns.entered(path)` stays bound to that namespace. Every
netlink error is turned into `NotFound`/`AlreadyExists`/`LinkError` here and nowhere else.
"""

from __future__ import annotations

import _socket as socket  # the C module: socket.py's enums cost a plugin process 5 ms
import builtins  # `set` is a method of Netlink; annotations inside it need the builtin by name
import errno
import ipaddress
import struct
import time

from ..records import record
from . import rtnl
from .rtnl import RtnlError

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any, Iterator


class LinkError(Exception):
    def __init__(self, msg: str, code: int = 0) -> None:
        super().__init__(msg)
        self.code = code


class NotFound(LinkError):
    pass


class AlreadyExists(LinkError):
    pass


def _wrap(e: OSError, what: str) -> LinkError:
    code = e.errno or 0
    if code in (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL):
        return NotFound(f"{what}: {e.strerror}", code)
    if code == errno.EEXIST:
        return AlreadyExists(f"{what}: already exists", code)
    return LinkError(f"{what}: {e.strerror}", code)


@record(frozen=True)
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


def _link(payload: bytes) -> Link:
    index, flags, a, kind = rtnl.parse_link(payload)
    op = a.get(rtnl.IFLA_OPERSTATE)
    return Link(index=index, name=rtnl.text(a.get(rtnl.IFLA_IFNAME)), kind=kind,
                mac=rtnl.mac_str(a[rtnl.IFLA_ADDRESS]) if rtnl.IFLA_ADDRESS in a else "",
                mtu=struct.unpack("=I", a[rtnl.IFLA_MTU])[0] if rtnl.IFLA_MTU in a else 0,
                master=struct.unpack("=I", a[rtnl.IFLA_MASTER])[0] if rtnl.IFLA_MASTER in a else 0,
                up=bool(flags & rtnl.IFF_UP),
                operstate=rtnl.OPERSTATES[op[0]] if op and op[0] < len(rtnl.OPERSTATES) else "")


def _delete_link(nl: rtnl.Rtnl, index: int, failed: list[RtnlError]) -> None:
    try:
        nl.del_link(index)
    except RtnlError as e:
        if e.errno != errno.ENODEV:
            failed.append(e)
    finally:
        nl.close()


def _ip(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed


class Netlink:
    """One rtnetlink socket in the namespace that was current when it was opened."""

    def __init__(self) -> None:
        self.nl = rtnl.Rtnl()

    def close(self) -> None:
        self.nl.close()

    def __enter__(self) -> "Netlink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- links -----------------------------------------------------------------
    # RTM_GETLINK for one name or index is answered by the kernel directly; a dump with a
    # filter would walk and parse every link, which costs O(links) per lookup.
    def link(self, name: str) -> Link | None:
        try:
            got = self.nl.get_link(name=name)
        except RtnlError as e:
            raise _wrap(e, f"link {name}") from e
        return _link(got) if got else None

    def link_by_index(self, index: int) -> Link | None:
        try:
            got = self.nl.get_link(index=index)
        except RtnlError as e:
            raise _wrap(e, f"link #{index}") from e
        return _link(got) if got else None

    def links(self) -> list[Link]:
        return [_link(p) for p in self.nl.dump_links()]

    def require(self, name: str) -> Link:
        link = self.link(name)
        if link is None:
            raise NotFound(f"link {name} not found")
        return link

    def _new(self, what: str, body: bytes, create: bool = True) -> None:
        try:
            self.nl.new_link(body, create)
        except RtnlError as e:
            raise _wrap(e, what) from e

    def add_link(self, name: str, kind: str, mtu: int = 0) -> None:
        """A new link of a kind that needs no parameters (bridge, ifb)."""
        body = rtnl.Rtnl.ifinfo() + rtnl.string(rtnl.IFLA_IFNAME, name) + \
            rtnl.nested(rtnl.IFLA_LINKINFO, rtnl.string(rtnl.IFLA_INFO_KIND, kind))
        if mtu:
            body += rtnl.u32(rtnl.IFLA_MTU, mtu)
        self._new(f"create {kind} {name}", body)

    def ensure_bridge(self, name: str, mtu: int = 0, promisc: bool = False,
                      vlan_filtering: bool = False) -> Link:
        """The bridge, made if missing; an existing non-bridge of that name is an error."""
        link = self.link(name)
        if link is None:
            try:
                self.add_link(name, "bridge", mtu)
            except AlreadyExists:
                pass  # another plugin call made it between our look and our add
            link = self.require(name)
        if link.kind != "bridge":
            raise LinkError(f"{name!r} already exists but is not a bridge (it is a {link.kind or 'device'})")
        if vlan_filtering:  # `ip link set NAME type bridge vlan_filtering 1`
            data = rtnl.nested(rtnl.IFLA_INFO_DATA, rtnl.u8(rtnl.IFLA_BR_VLAN_FILTERING, 1))
            body = rtnl.Rtnl.ifinfo(link.index) + \
                rtnl.nested(rtnl.IFLA_LINKINFO, rtnl.string(rtnl.IFLA_INFO_KIND, "bridge"), data)
            self._new(f"turn on VLAN filtering on {name}", body, create=False)
        if promisc:
            self.set(link.index, f"set {name} promisc", promisc=True)
        if not link.up:
            self.set(link.index, f"bring {name} up", state="up")
        elif not promisc and not vlan_filtering:
            return link  # the common case, a bridge that exists and is up: no second lookup
        return self.require(name)

    def add_veth(self, name: str, peer: str, peer_ns_fd: int, mtu: int = 0, peer_mac: str = "") -> Link:
        peer_attrs = rtnl.string(rtnl.IFLA_IFNAME, peer) + rtnl.u32(rtnl.IFLA_NET_NS_FD, peer_ns_fd)
        body = rtnl.Rtnl.ifinfo() + rtnl.string(rtnl.IFLA_IFNAME, name)
        if mtu:
            body += rtnl.u32(rtnl.IFLA_MTU, mtu)
            peer_attrs += rtnl.u32(rtnl.IFLA_MTU, mtu)
        if peer_mac:
            peer_attrs += rtnl.attr(rtnl.IFLA_ADDRESS, rtnl.mac_bytes(peer_mac))
        body += rtnl.nested(rtnl.IFLA_LINKINFO, rtnl.string(rtnl.IFLA_INFO_KIND, "veth"),
                            rtnl.nested(rtnl.IFLA_INFO_DATA,
                                        rtnl.nested(rtnl.VETH_INFO_PEER, rtnl.Rtnl.ifinfo() + peer_attrs)))
        self._new(f"create veth {name}/{peer}", body)
        return self.require(name)

    def set(self, index: int, what: str, state: str = "", master: int | None = None, mtu: int = 0,
            promisc: bool | None = None) -> None:
        """Changes a link in one message: up/down, its master (0 detaches), MTU, promiscuity."""
        flags = change = 0
        if state:
            change |= rtnl.IFF_UP
            flags |= rtnl.IFF_UP if state == "up" else 0
        if promisc is not None:
            change |= rtnl.IFF_PROMISC
            flags |= rtnl.IFF_PROMISC if promisc else 0
        body = rtnl.Rtnl.ifinfo(index, flags, change)
        if master is not None:
            body += rtnl.u32(rtnl.IFLA_MASTER, master)
        if mtu:
            body += rtnl.u32(rtnl.IFLA_MTU, mtu)
        self._new(what, body, create=False)

    def delete(self, name: str, background: bool = False) -> bool:
        """Removes a link; returns False when it was already gone.

        The kernel takes a device out of its namespace at once but then waits, inside the
        same request, for an RCU grace period before it frees it (~20 ms on this VM, most
        of a CNI DEL). With `background`, that request runs on a thread of its own and we
        return as soon as the link is gone from the namespace - its name and address free,
        its peer gone too - leaving the kernel to finish freeing it, as it does for every
        device of a deleted namespace.
        """
        link = self.link(name)
        if link is None:
            return False
        if not background:
            try:
                self.nl.del_link(link.index)
            except RtnlError as e:
                if e.errno == errno.ENODEV:
                    return False
                raise _wrap(e, f"delete {name}") from e
            return True
        worker = rtnl.Rtnl()  # opened here, so in this thread's namespace, and used only by the thread
        failed: list[RtnlError] = []
        import threading  # only the agent deletes in the background
        t = threading.Thread(target=_delete_link, args=(worker, link.index, failed), name=f"delete-{name}")
        t.start()
        deadline = time.monotonic() + 10
        while self.nl.get_link(index=link.index) is not None:
            if not t.is_alive() or time.monotonic() > deadline:
                t.join()
                break
            time.sleep(0.0002)
        if failed:
            raise _wrap(failed[0], f"delete {name}") from failed[0]
        return True

    def set_hairpin(self, index: int, on: bool) -> None:
        body = rtnl.Rtnl.ifinfo(index, family=rtnl.AF_BRIDGE) + \
            rtnl.nested(rtnl.IFLA_PROTINFO, rtnl.u8(rtnl.IFLA_BRPORT_MODE, 1 if on else 0))
        try:
            self.nl.request(rtnl.RTM_SETLINK, body)
        except RtnlError as e:
            raise _wrap(e, "set hairpin mode") from e

    def add_port_vlan(self, index: int, name: str, vid: int) -> None:
        """Puts a bridge port in one access VLAN: `vid` untagged and its PVID, instead of the default 1."""
        try:
            self.nl.port_vlan(False, index, 1)
        except RtnlError as e:
            if e.errno != errno.ENOENT:  # a bridge without VLAN 1 on its ports
                raise _wrap(e, f"remove VLAN 1 from {name}") from e
        try:
            self.nl.port_vlan(True, index, vid, rtnl.BRIDGE_VLAN_INFO_PVID | rtnl.BRIDGE_VLAN_INFO_UNTAGGED)
        except RtnlError as e:
            raise _wrap(e, f"put {name} in VLAN {vid}") from e

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
        for p in self.nl.dump_addresses():
            _, prefixlen, idx, addr = rtnl.parse_address(p)
            if idx == index and addr:
                out.append(ipaddress.ip_interface((ipaddress.ip_address(addr), prefixlen)))
        return out

    def add_address(self, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
                    nodad: bool = False) -> None:
        flags = rtnl.IFA_F_NODAD if iface.version == 6 and nodad else 0
        try:
            self.nl.address(True, index, iface.ip.packed, iface.network.prefixlen, flags)
        except RtnlError as e:
            if e.errno != errno.EEXIST:
                raise _wrap(e, f"add address {iface}") from e

    def del_address(self, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
        try:
            self.nl.address(False, index, iface.ip.packed, iface.network.prefixlen)
        except RtnlError as e:
            if e.errno not in (errno.EADDRNOTAVAIL, errno.ENOENT):
                raise _wrap(e, f"delete address {iface}") from e

    # -- routes ----------------------------------------------------------------
    def add_route(self, dst: str, index: int, gw: str | None = None, scope: int | None = None,
                  table: int | None = None, priority: int | None = None, mtu: int | None = None,
                  onlink: bool = False, replace: bool = False) -> None:
        net = ipaddress.ip_network(dst, strict=False)
        extra = rtnl.u32(rtnl.RTA_OIF, index)
        if gw:
            extra += rtnl.attr(rtnl.RTA_GATEWAY, _ip(gw))
        if priority:
            extra += rtnl.u32(rtnl.RTA_PRIORITY, priority)
        if mtu:
            extra += rtnl.nested(rtnl.RTA_METRICS, rtnl.u32(rtnl.RTAX_MTU, mtu))
        flags = rtnl.NLM_F_CREATE | (rtnl.NLM_F_REPLACE if replace else rtnl.NLM_F_EXCL)
        try:
            self.nl.route(rtnl.RTM_NEWROUTE, socket.AF_INET if net.version == 4 else socket.AF_INET6,
                          net.network_address.packed, net.prefixlen, flags, scope or 0, table or 254, extra,
                          rtnl.RTNH_F_ONLINK if onlink else 0)
        except RtnlError as e:
            if e.errno != errno.EEXIST:
                raise _wrap(e, f"add route {dst}" + (f" via {gw}" if gw else "")) from e

    def del_route(self, dst: str, index: int | None = None, gw: str | None = None) -> bool:
        net = ipaddress.ip_network(dst, strict=False)
        extra = rtnl.u32(rtnl.RTA_OIF, index) if index else b""
        if gw:
            extra += rtnl.attr(rtnl.RTA_GATEWAY, _ip(gw))
        try:
            self.nl.route(rtnl.RTM_DELROUTE, socket.AF_INET if net.version == 4 else socket.AF_INET6,
                          net.network_address.packed, net.prefixlen, 0, 0, 254, extra)
            return True
        except RtnlError as e:
            if e.errno in (errno.ESRCH, errno.ENOENT):
                return False
            raise _wrap(e, f"delete route {dst}") from e

    def route_to(self, dst: str) -> dict[str, str | None]:
        """Where the kernel would send a packet to `dst`: its gateway (None when on-link) and the
        source address it would pick."""
        try:
            _, _, _, _, a = rtnl.parse_route(self.nl.get_route(_ip(dst)))
        except RtnlError as e:
            raise _wrap(e, f"route to {dst}") from e
        return {k: str(ipaddress.ip_address(a[n])) if n in a else None
                for k, n in (("gateway", rtnl.RTA_GATEWAY), ("prefsrc", rtnl.RTA_PREFSRC))}

    def routes(self, family: int = 2, table: int = 254) -> Iterator[dict[str, Any]]:
        for p in self.nl.dump_routes(family):
            fam, dst_len, tbl, scope, a = rtnl.parse_route(p)
            tbl = struct.unpack("=I", a[rtnl.RTA_TABLE])[0] if rtnl.RTA_TABLE in a else tbl
            if tbl != table:
                continue
            dst = str(ipaddress.ip_address(a[rtnl.RTA_DST])) if rtnl.RTA_DST in a else None
            yield {"dst": f"{dst}/{dst_len}" if dst else ("0.0.0.0/0" if fam == 2 else "::/0"),
                   "gw": str(ipaddress.ip_address(a[rtnl.RTA_GATEWAY])) if rtnl.RTA_GATEWAY in a else None,
                   "oif": struct.unpack("=I", a[rtnl.RTA_OIF])[0] if rtnl.RTA_OIF in a else None,
                   "scope": scope, "table": tbl}

    # -- neighbours and fdb (the overlay's entries) -----------------------------
    def ensure_vxlan(self, name: str, vni: int, local: str, port: int, uplink: int, mac: str, mtu: int) -> Link:
        """A VXLAN device with learning off; an existing one with other parameters is recreated."""
        link = self.link(name)
        if link is not None and (link.kind != "vxlan" or link.mac != mac):
            self.delete(name)
            link = None
        if link is None:
            data = (rtnl.u32(rtnl.IFLA_VXLAN_ID, vni) + rtnl.u32(rtnl.IFLA_VXLAN_LINK, uplink) +
                    rtnl.attr(rtnl.IFLA_VXLAN_LOCAL, _ip(local)) + rtnl.u8(rtnl.IFLA_VXLAN_LEARNING, 0) +
                    rtnl.attr(rtnl.IFLA_VXLAN_PORT, struct.pack("!H", port)) +
                    rtnl.u8(rtnl.IFLA_VXLAN_UDP_CSUM, 0))
            body = (rtnl.Rtnl.ifinfo() + rtnl.string(rtnl.IFLA_IFNAME, name) +
                    rtnl.attr(rtnl.IFLA_ADDRESS, rtnl.mac_bytes(mac)) + rtnl.u32(rtnl.IFLA_MTU, mtu) +
                    rtnl.nested(rtnl.IFLA_LINKINFO, rtnl.string(rtnl.IFLA_INFO_KIND, "vxlan"),
                                rtnl.nested(rtnl.IFLA_INFO_DATA, data)))
            self._new(f"create vxlan {name}", body)
            link = self.require(name)
        if not link.up:
            self.set(link.index, f"bring {name} up", state="up")
        return self.require(name)

    def neigh_replace(self, index: int, ip: str, mac: str) -> None:
        try:
            self.nl.neigh(rtnl.RTM_NEWNEIGH, rtnl.NLM_F_CREATE | rtnl.NLM_F_REPLACE, socket.AF_INET, index,
                          rtnl.NUD_PERMANENT, 0,
                          rtnl.attr(rtnl.NDA_DST, _ip(ip)) + rtnl.attr(rtnl.NDA_LLADDR, rtnl.mac_bytes(mac)))
        except RtnlError as e:
            raise _wrap(e, f"neighbour {ip}") from e

    def fdb_entries(self, index: int) -> builtins.set[tuple[str, str]]:
        out: builtins.set[tuple[str, str]] = builtins.set()
        for p in self.nl.dump_neigh(rtnl.AF_BRIDGE, index):
            idx, a = rtnl.parse_neigh(p)
            if idx == index and rtnl.NDA_DST in a and rtnl.NDA_LLADDR in a:
                out.add((rtnl.mac_str(a[rtnl.NDA_LLADDR]), str(ipaddress.ip_address(a[rtnl.NDA_DST]))))
        return out

    def _fdb(self, kind: int, flags: int, index: int, mac: str, dst_ip: str) -> None:
        self.nl.neigh(kind, flags, rtnl.AF_BRIDGE, index, rtnl.NUD_PERMANENT, rtnl.NTF_SELF,
                      rtnl.attr(rtnl.NDA_LLADDR, rtnl.mac_bytes(mac)) + rtnl.attr(rtnl.NDA_DST, _ip(dst_ip)))

    def fdb_add(self, index: int, mac: str, dst_ip: str) -> None:
        try:
            self._fdb(rtnl.RTM_NEWNEIGH, rtnl.NLM_F_CREATE | rtnl.NLM_F_APPEND, index, mac, dst_ip)
        except RtnlError as e:
            if e.errno != errno.EEXIST:
                raise _wrap(e, f"fdb {mac} -> {dst_ip}") from e

    def fdb_del(self, index: int, mac: str, dst_ip: str) -> None:
        try:
            self._fdb(rtnl.RTM_DELNEIGH, 0, index, mac, dst_ip)
        except RtnlError as e:
            if e.errno not in (errno.ENOENT, errno.ESRCH):
                raise _wrap(e, f"fdb {mac} -> {dst_ip}") from e
