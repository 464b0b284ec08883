"""bridge: a veth pair from the pod to a Linux bridge on the host, addresses from IPAM.

Same keys as the reference (containernetworking/plugins main/bridge). Differences, on
purpose: IPAM runs before the veth is made and every step pushes its undo, so a failed
ADD leaves no veth and no address behind; masquerade and MAC spoof checks are nftables
map elements tagged with the attachment, so DEL and GC find them without prevResult.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os

from ...records import record
from ...kernel import netns, nft, sysctl
from ...kernel.links import LinkError, Netlink
from ...kernel.nftables import BaseChain, Transaction, quote
from .. import config as cfg
from .. import invoke, spec
from ..skel import CmdArgs
from ..spec import CNIError
from .host_local import valid_attachments

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any

MASQ_TABLE = "gingham-bridge"
SPOOF_TABLE = "gingham-macspoofchk"
def _is_mac(v: str) -> bool:
    """Six colon-separated pairs of hex digits (by hand: a plugin process does not import `re`)."""
    parts = v.split(":")
    return len(parts) == 6 and all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts)


@record
class NetConf:
    bridge: str
    is_gateway: bool
    is_default_gateway: bool
    force_address: bool
    ip_masq: bool
    mtu: int
    hairpin: bool
    promisc: bool
    vlan: int
    macspoofchk: bool
    enable_dad: bool
    ipam_type: str
    dns: dict[str, Any]
    mac: str


def load(a: CmdArgs) -> NetConf:
    c = a.conf
    cfg.reject_keys(c, {
        "vlanTrunk": "VLAN trunks on the container port are not implemented by gingham-bridge",
        "disableContainerInterface": "gingham-bridge always brings up the container interface",
        "portIsolation": "port isolation is not implemented by gingham-bridge",
    })
    promisc = cfg.get_bool(c, "promiscMode")
    hairpin = cfg.get_bool(c, "hairpinMode")
    if promisc and hairpin:
        raise CNIError(spec.ERR_INVALID_CONFIG, "cannot set hairpin mode and promiscuous mode at the same time")
    is_dgw = cfg.get_bool(c, "isDefaultGateway")
    ipam = cfg.get_obj(c, "ipam")
    if "ipam" not in c:
        raise CNIError(spec.ERR_INVALID_CONFIG, "missing ipam", "bridge needs \"ipam\" ({} for an L2-only network)")
    mac = cfg.get_str(c.get("runtimeConfig") or {}, "mac") or \
        cfg.get_str(cfg.get_obj(cfg.get_obj(c, "args"), "cni"), "mac") or a.cni_args().get("MAC", "")
    if mac and not _is_mac(mac):
        raise CNIError(spec.ERR_INVALID_CONFIG, "invalid MAC address", f"{mac!r} is not aa:bb:cc:dd:ee:ff")
    return NetConf(
        bridge=cfg.get_str(c, "bridge", "cni0") or "cni0",
        is_gateway=cfg.get_bool(c, "isGateway") or is_dgw,
        is_default_gateway=is_dgw,
        force_address=cfg.get_bool(c, "forceAddress"),
        ip_masq=cfg.get_bool(c, "ipMasq"),
        mtu=cfg.get_int(c, "mtu", 0, 0, 65535),
        hairpin=hairpin, promisc=promisc,
        vlan=cfg.get_int(c, "vlan", 0, 0, 4094),
        macspoofchk=cfg.get_bool(c, "macspoofchk"),
        enable_dad=cfg.get_bool(c, "enabledad"),
        ipam_type=ipam_plugin(cfg.get_str(ipam, "type", "", "ipam.")),
        dns=cfg.get_obj(c, "dns"),
        mac=mac.lower(),
    )


def _env(a: CmdArgs) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    env.update({"CNI_COMMAND": a.command, "CNI_CONTAINERID": a.container_id, "CNI_NETNS": a.netns,
                "CNI_IFNAME": a.ifname, "CNI_ARGS": a.args, "CNI_PATH": a.path})
    return env


def _owner(a: CmdArgs) -> str:
    return f"{a.network}/{a.container_id}/{a.ifname}"


def _chain_for(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    import hashlib
    return "masq-" + hashlib.sha256(str(net).encode()).hexdigest()[:12]


def masq_script(owner: str, ips: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]) -> Transaction:
    """One transaction that ensures the table and maps each pod address to its subnet's chain."""
    tx = (Transaction("inet", MASQ_TABLE).add_table()
          .add_map("masq4", "type ipv4_addr : verdict").add_map("masq6", "type ipv6_addr : verdict")
          .add_chain("postrouting", BaseChain("postrouting", "nat", "postrouting", "srcnat")).flush_chain("postrouting")
          .add_rules("postrouting", ["ip saddr vmap @masq4", "ip6 saddr vmap @masq6"]))
    for iface in ips:
        chain, fam = _chain_for(iface.network), ("ip" if iface.version == 4 else "ip6")
        mcast = "224.0.0.0/4" if iface.version == 4 else "ff00::/8"
        (tx.add_chain(chain).flush_chain(chain)
         .add_rules(chain, [f"{fam} daddr {iface.network} return", f"{fam} daddr {mcast} return", "masquerade"])
         .add_element(f"masq{iface.version}", str(iface.ip), f"jump {chain}", owner))
    return tx


def spoof_script(owner: str, host_veth: str, mac: str) -> Transaction:
    """The bridge table that drops frames from a pod's port with a source MAC not its own."""
    return (Transaction("bridge", SPOOF_TABLE).add_table()
            .add_set("ports", "type ifname").add_set("allowed", "type ifname . ether_addr")
            .add_chain("prerouting", BaseChain("prerouting", "filter", "prerouting", -300)).flush_chain("prerouting")
            .add_rule("prerouting", "iifname @ports iifname . ether saddr != @allowed drop")
            .add_element("ports", quote(host_veth), comment=owner)
            .add_element("allowed", f"{quote(host_veth)} . {mac}", comment=owner))


def _ensure_gateway_addr(host: Netlink, br_index: int, br_name: str,
                         gw: ipaddress.IPv4Interface | ipaddress.IPv6Interface, force: bool) -> None:
    for have in host.addresses(br_index):
        if have.version != gw.version:
            continue
        if have == gw:
            return
        if gw.version == 4 or gw.ip in have.network or have.ip in gw.network:
            if not force:
                raise CNIError(spec.ERR_INVALID_CONFIG, f"{br_name!r} already has an IP address different from {gw}",
                               f"it has {have}; set forceAddress to replace it, or use another bridge name")
            host.del_address(br_index, have)
    host.add_address(br_index, gw, nodad=True)


# plugins that make or change interfaces (the reference's main and meta plugins, and gingham's):
# named as IPAM they would be run again by what they run, or do a main plugin's work twice
NOT_IPAM = {"bridge", "ptp", "macvlan", "ipvlan", "vlan", "host-device", "dummy", "tap", "loopback", "portmap",
            "bandwidth", "firewall", "tuning", "sbr", "vrf"}


def ipam_plugin(name: str) -> str:
    if name.removeprefix("gingham-") in NOT_IPAM:
        raise CNIError(spec.ERR_INVALID_CONFIG, f"invalid network config: ipam.type {name!r}",
                       "ipam.type names an interface plugin, not an IPAM plugin (host-local, static, dhcp...)")
    return name


def _drop_if_unused(host: Netlink, bridge: str) -> None:
    link = host.link(bridge)
    if link is not None and not any(other.master == link.index for other in host.links()):
        host.delete(bridge)


class Bridge:
    name = "bridge"
    versions = spec.SUPPORTED_VERSIONS

    def add(self, a: CmdArgs) -> dict[str, Any]:
        n = load(a)
        try:
            ns_fd = netns.open_ns(a.netns)
        except netns.NetnsNotFound as e:
            raise CNIError(spec.ERR_UNKNOWN_CONTAINER, "failed to open netns", f"{e}; was the pod sandbox removed?")
        try:
            with contextlib.ExitStack() as undo:
                result = self._add(a, n, ns_fd, undo)
                undo.pop_all()
                return result
        except LinkError as e:
            raise CNIError(spec.ERR_INTERNAL, "bridge: failed to set up the pod network", str(e)) from e
        except nft.NftError as e:
            raise CNIError(spec.ERR_INTERNAL, "bridge: failed to write nftables rules", str(e)) from e
        finally:
            os.close(ns_fd)

    def _add(self, a: CmdArgs, n: NetConf, ns_fd: int, undo: contextlib.ExitStack) -> dict[str, Any]:
        env = _env(a)
        with netns.entered(a.netns), Netlink() as pod:
            if pod.link(a.ifname) is not None:
                raise CNIError(spec.ERR_INVALID_CONFIG, f"container already has an interface named {a.ifname}",
                               f"in {a.netns}; ADD twice without DEL, or the wrong CNI_IFNAME")
        host = undo.enter_context(Netlink())
        made_bridge = host.link(n.bridge) is None
        br = host.ensure_bridge(n.bridge, n.mtu, n.promisc, vlan_filtering=bool(n.vlan))
        if made_bridge:  # undone last: a failed first ADD leaves no bridge (unless a pod joined it meanwhile)
            undo.callback(_drop_if_unused, host, n.bridge)
        ipam: dict[str, Any] = {"ips": [], "routes": []}
        if n.ipam_type:
            ipam = invoke.delegate(n.ipam_type, "ADD", env, a.stdin) or ipam
            undo.callback(invoke.delegate, n.ipam_type, "DEL", env, a.stdin)
        veth = None
        for _ in range(10):
            name = "veth" + os.urandom(4).hex()
            try:
                veth = host.add_veth(name, a.ifname, ns_fd, n.mtu, n.mac)
                break
            except LinkError as e:
                if "exists" not in str(e):
                    raise
        assert veth is not None
        undo.callback(host.delete, veth.name)
        if n.hairpin or n.vlan:
            host.set(veth.index, f"attach {veth.name} to {n.bridge}", master=br.index)
            if n.hairpin:
                host.set_hairpin(veth.index, True)
            if n.vlan:
                host.add_port_vlan(veth.index, veth.name, n.vlan)
            host.set(veth.index, f"bring {veth.name} up", state="up")
        else:  # one netlink message for both
            host.set(veth.index, f"attach {veth.name} to {n.bridge} and bring it up", master=br.index, state="up")

        ips = [ipaddress.ip_interface(ip["address"]) for ip in ipam.get("ips", [])]
        routes = list(ipam.get("routes", []) or [])
        if n.is_default_gateway:
            for ip in ipam.get("ips", []):
                fam = ipaddress.ip_interface(ip["address"]).version
                default = "0.0.0.0/0" if fam == 4 else "::/0"
                for r in routes:
                    if r.get("dst") == default and r.get("gw") and r["gw"] != ip.get("gateway"):
                        raise CNIError(spec.ERR_INVALID_CONFIG, "isDefaultGateway ineffective",
                                       f"IPAM sets the default route via {r['gw']}")
                if ip.get("gateway") and not any(r.get("dst") == default for r in routes):
                    routes.append({"dst": default, "gw": ip["gateway"]})
        gws = {ipaddress.ip_interface(ip["address"]).version: ip.get("gateway") for ip in ipam.get("ips", [])}

        with netns.entered(a.netns), Netlink() as pod:
            link = pod.require(a.ifname)
            has_v6 = any(ip.version == 6 for ip in ips)
            if has_v6:
                sysctl.write_iface(6, a.ifname, "accept_dad", 1 if n.enable_dad else 0)
            sysctl.write_iface(4, a.ifname, "arp_notify", 1)
            for ip in ips:
                pod.add_address(link.index, ip, nodad=not n.enable_dad)
            pod.set(link.index, f"bring {a.ifname} up", state="up")
            for r in routes:
                dst = ipaddress.ip_network(r["dst"], strict=False)
                pod.add_route(str(dst), link.index, gw=r.get("gw") or gws.get(dst.version))
            pod_link = link

        if n.is_gateway:
            for ip in ipam.get("ips", []):
                if not ip.get("gateway"):
                    continue
                iface = ipaddress.ip_interface(ip["address"])
                gw = ipaddress.ip_interface(f"{ip['gateway']}/{iface.network.prefixlen}")
                _ensure_gateway_addr(host, br.index, n.bridge, gw, n.force_address)
                sysctl.write("net.ipv4.ip_forward" if gw.version == 4 else "net.ipv6.conf.all.forwarding", 1)
        if n.ip_masq and ips:
            undo.callback(nft.delete_elements_where, "inet", MASQ_TABLE, lambda c, o=_owner(a): c == o)
            nft.run(masq_script(_owner(a), ips))
        if n.macspoofchk:
            undo.callback(nft.delete_elements_where, "bridge", SPOOF_TABLE, lambda c, o=_owner(a): c == o)
            nft.run(spoof_script(_owner(a), veth.name, pod_link.mac))
        host.wait_oper_up(veth.index)
        br = host.require(n.bridge)  # a new bridge takes its first port's MAC: report what it has now
        result: dict[str, Any] = {
            "cniVersion": "1.1.0",
            "interfaces": [{"name": br.name, "mac": br.mac},
                           {"name": veth.name, "mac": veth.mac},
                           {"name": a.ifname, "mac": pod_link.mac, "sandbox": a.netns}],
            "ips": [{**ip, "interface": 2} for ip in ipam.get("ips", [])],
            "routes": routes,
            "dns": n.dns or ipam.get("dns") or {},
        }
        return result

    def delete(self, a: CmdArgs) -> None:
        n = load(a)
        env = _env(a)
        if a.netns and netns.exists(a.netns):
            with netns.entered(a.netns), Netlink() as pod:
                pod.delete(a.ifname, background=True)
        if n.ipam_type:
            invoke.delegate(n.ipam_type, "DEL", env, a.stdin)
        # The config does not change between ADD and DEL (spec), so only what ADD made is looked at;
        # GC sweeps both tables whatever the config says.
        owner = _owner(a)
        if n.ip_masq:
            nft.delete_elements_where("inet", MASQ_TABLE, lambda c: c == owner)
        if n.macspoofchk:
            nft.delete_elements_where("bridge", SPOOF_TABLE, lambda c: c == owner)

    def check(self, a: CmdArgs) -> None:
        n = load(a)
        prev = a.prev_result()
        if prev is None:
            raise CNIError(spec.ERR_INVALID_CONFIG, "bridge: CHECK needs prevResult")
        if n.ipam_type:
            invoke.delegate(n.ipam_type, "CHECK", _env(a), a.stdin)
        ifaces = prev.get("interfaces", [])
        mine = next((i for i in ifaces if i.get("name") == a.ifname and i.get("sandbox")), None)
        if mine is None:
            raise CNIError(spec.ERR_INVALID_CONFIG, f"prevResult has no interface {a.ifname} in a sandbox")
        try:
            with netns.entered(a.netns), Netlink() as pod:
                link = pod.link(a.ifname)
                if link is None:
                    raise CNIError(spec.ERR_UNKNOWN_CONTAINER, f"{a.ifname} is missing in {a.netns}")
                if mine.get("mac") and link.mac != mine["mac"]:
                    raise CNIError(spec.ERR_INVALID_CONFIG, f"{a.ifname} has MAC {link.mac}, expected {mine['mac']}")
                have = set(pod.addresses(link.index))
                idx = ifaces.index(mine)
                for ip in prev.get("ips", []):
                    if ip.get("interface") == idx and ipaddress.ip_interface(ip["address"]) not in have:
                        raise CNIError(spec.ERR_INVALID_CONFIG, f"{a.ifname} lacks address {ip['address']}")
        except netns.NetnsNotFound as e:
            raise CNIError(spec.ERR_UNKNOWN_CONTAINER, "netns is gone", str(e)) from e
        with Netlink() as host:
            br = host.link(n.bridge)
            if br is None or br.kind != "bridge":
                raise CNIError(spec.ERR_INVALID_CONFIG, f"bridge {n.bridge} is missing")
            hv = next((i for i in ifaces if not i.get("sandbox") and i.get("name") != n.bridge), None)
            if hv is not None:
                link = host.link(hv["name"])
                if link is None or link.master != br.index:
                    raise CNIError(spec.ERR_INVALID_CONFIG, f"host veth {hv['name']} is not on bridge {n.bridge}")

    def status(self, a: CmdArgs) -> None:
        n = load(a)
        if n.ipam_type:
            invoke.delegate(n.ipam_type, "STATUS", _env(a), a.stdin)

    def gc(self, a: CmdArgs) -> None:
        n = load(a)
        errors = []
        if n.ipam_type:
            try:
                invoke.delegate(n.ipam_type, "GC", _env(a), a.stdin)
            except CNIError as e:
                errors.append(str(e))
        keep = {f"{a.network}/{cid}/{ifn}" for cid, ifn in valid_attachments(a.conf)}
        mine = f"{a.network}/"
        for family, table in (("inet", MASQ_TABLE), ("bridge", SPOOF_TABLE)):
            try:
                nft.delete_elements_where(family, table, lambda c: c.startswith(mine) and c not in keep)
            except nft.NftError as e:
                errors.append(str(e))
        if errors:
            raise CNIError(spec.ERR_INTERNAL, "bridge: GC incomplete", "; ".join(errors))


PLUGIN = Bridge()
