"""portmap: hostPort -> containerPort with nftables maps in the gingham-hostport table.

The reference's nftables backend keeps a chain per container; here every mapping is an
element of a verdict-free DNAT map keyed by (proto . port), or (hostIP . proto . port),
so a packet costs one lookup whatever the number of pods, and an ADD or DEL is one
transaction of element changes. Every element carries its attachment as a comment.
Hairpin (a pod reaching its own hostPort) and localhost access are masqueraded when
`snat` is on (the default), as the reference does; `masqAll` masquerades everything.
`markMasqBit` and `externalSetMarkChain` belong to the reference's iptables backend:
the first is validated and has no effect here, the second is refused.
"""

from __future__ import annotations

import ipaddress

from ...kernel import nft, sysctl
from ...kernel.nftables import BaseChain, Transaction
from ...records import record
from .. import config as cfg
from .. import spec
from ..skel import CmdArgs
from ..spec import CNIError
from .host_local import valid_attachments

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any

TABLE = "gingham-hostport"


@record(frozen=True)
class Mapping:
    host_port: int
    container_port: int
    protocol: str
    host_ip: str


def load(a: CmdArgs) -> tuple[list[Mapping], bool, bool]:
    c = a.conf
    cfg.reject_keys(c, {"externalSetMarkChain": "gingham-portmap writes nftables only; there is no iptables chain"})
    snat = cfg.get_bool(c, "snat", True)
    masq_all = cfg.get_bool(c, "masqAll")
    cfg.get_int(c, "markMasqBit", 13, 0, 31)
    out = []
    raw = a.runtime_config().get("portMappings") or []
    if not isinstance(raw, list):
        raise CNIError(spec.ERR_INVALID_CONFIG, "runtimeConfig.portMappings must be a list")
    for i, m in enumerate(raw):
        where = f"runtimeConfig.portMappings[{i}]."
        if not isinstance(m, dict):
            raise CNIError(spec.ERR_INVALID_CONFIG, f"{where[:-1]} must be an object")
        hp = cfg.get_int(m, "hostPort", 0, 1, 65535, where)
        cp = cfg.get_int(m, "containerPort", 0, 1, 65535, where)
        proto = cfg.get_str(m, "protocol", "tcp", where).lower() or "tcp"
        if proto not in ("tcp", "udp", "sctp"):
            raise CNIError(spec.ERR_INVALID_CONFIG, f"invalid {where}protocol", f"{proto!r}: use tcp, udp or sctp")
        hip = cfg.get_str(m, "hostIP", "", where)
        if hip:
            hip = str(cfg.parse_ip(hip, where + "hostIP"))
            if ipaddress.ip_address(hip).is_unspecified:
                hip = ""
        out.append(Mapping(hp, cp, proto, hip))
    return out, snat, masq_all


# The mark the hostports chain sets on hairpin/localhost/masqAll packets for postrouting to
# masquerade; the reference's default markMasqBit (13). One table serves all networks, so it is fixed.
MASQ_MARK = "0x2000"

def base() -> Transaction:
    """The table, its maps and sets and its chains (the rules made anew: the same for every ADD)."""
    tx = Transaction("inet", TABLE).add_table()
    for fam, addr in ((4, "ipv4_addr"), (6, "ipv6_addr")):
        tx.add_map(f"hostports{fam}", f"type inet_proto . inet_service : {addr} . inet_service")
        tx.add_map(f"hostip{fam}", f"type {addr} . inet_proto . inet_service : {addr} . inet_service")
    tx.add_set("hairpin4", "type ipv4_addr . inet_proto . inet_service")
    tx.add_set("hairpin6", "type ipv6_addr . inet_proto . inet_service")
    for name in ("local4", "all4", "all6"):
        tx.add_set(name, "type inet_proto . inet_service")
    tx.add_chain("prerouting", BaseChain("prerouting", "nat", "prerouting", "dstnat"))
    tx.add_chain("output", BaseChain("output", "nat", "output", -100))
    tx.add_chain("postrouting", BaseChain("postrouting", "nat", "postrouting", "srcnat"))
    tx.add_chain("hostports")
    for chain in ("prerouting", "output", "postrouting", "hostports"):
        tx.flush_chain(chain)
    mark = f"meta mark set meta mark | {MASQ_MARK}"
    tx.add_rule("prerouting", "fib daddr type local jump hostports")
    tx.add_rule("output", "fib daddr type local jump hostports")
    tx.add_rules("hostports", [
        f"ip saddr . meta l4proto . th dport @hairpin4 {mark}",
        f"ip6 saddr . meta l4proto . th dport @hairpin6 {mark}",
        f"ip saddr 127.0.0.0/8 meta l4proto . th dport @local4 {mark}",
        f"meta nfproto ipv4 meta l4proto . th dport @all4 {mark}",
        f"meta nfproto ipv6 meta l4proto . th dport @all6 {mark}",
        "dnat ip to ip daddr . meta l4proto . th dport map @hostip4",
        "dnat ip to meta l4proto . th dport map @hostports4",
        "dnat ip6 to ip6 daddr . meta l4proto . th dport map @hostip6",
        "dnat ip6 to meta l4proto . th dport map @hostports6"])
    tx.add_rule("postrouting", f"meta mark & {MASQ_MARK} == {MASQ_MARK} masquerade")
    return tx


def container_ips(prev: dict[str, Any]) -> dict[int, str]:
    """The first pod address of each family, as the reference picks them."""
    ifaces = prev.get("interfaces", []) or []
    out: dict[int, str] = {}
    for ip in prev.get("ips", []) or []:
        idx = ip.get("interface")
        if idx is not None and 0 <= idx < len(ifaces) and not ifaces[idx].get("sandbox"):
            continue
        addr = ipaddress.ip_interface(ip["address"]).ip
        out.setdefault(addr.version, str(addr))
    return out


def add_script(owner: str, mappings: list[Mapping], ips: dict[int, str], snat: bool, masq_all: bool) -> Transaction:
    """The base, and each mapping's elements commented with its attachment."""
    tx = base()
    for m in mappings:
        port = f"{m.protocol} . {m.host_port}"
        for fam, pod in ips.items():
            if m.host_ip and ipaddress.ip_address(m.host_ip).version != fam:
                continue
            target = f"{pod} . {m.container_port}"
            if m.host_ip:
                tx.add_element(f"hostip{fam}", f"{m.host_ip} . {port}", target, owner)
            else:
                tx.add_element(f"hostports{fam}", port, target, owner)
            if snat:
                tx.add_element(f"hairpin{fam}", f"{pod} . {port}", comment=owner)
                if fam == 4:
                    tx.add_element("local4", port, comment=owner)
            if masq_all:
                tx.add_element(f"all{fam}", port, comment=owner)
    return tx


def _elements() -> list[tuple[str, str, str]]:
    """(map or set, key, owner) for every element gingham-hostport holds."""
    return [(name, key, owner) for name, elems in nft.elements("inet", TABLE).items() for key, owner in elems]


def drop(should_drop: Any) -> None:
    nft.delete_elements_where("inet", TABLE, should_drop)


def _keys(m: Mapping) -> list[tuple[str, str]]:
    """(map, key) pairs a mapping occupies, rendered as nft lists them."""
    if m.host_ip:
        fam = ipaddress.ip_address(m.host_ip).version
        return [(f"hostip{fam}", f"{m.host_ip} . {m.protocol} . {m.host_port}")]
    return [(f"hostports{f}", f"{m.protocol} . {m.host_port}") for f in (4, 6)]


def _check_conflicts(owner: str, mappings: list[Mapping]) -> None:
    taken = {(name, key): o for name, key, o in _elements() if name.startswith("host")}
    for m in mappings:
        for k in _keys(m):
            o = taken.get(k)
            if o and o != owner:
                raise CNIError(spec.ERR_INVALID_CONFIG, f"hostPort {m.host_port}/{m.protocol} is already mapped",
                               f"it belongs to {o}")


def _flush_udp_conntrack(mappings: list[Mapping]) -> None:
    """Flows to a UDP hostPort made before its mapping changed would keep their old DNAT."""
    from ...kernel import conntrack
    for m in mappings:
        if m.protocol == "udp":
            try:
                conntrack.delete_udp_to_port(m.host_port)
            except OSError as e:
                raise CNIError(spec.ERR_INTERNAL, "portmap: cannot delete the UDP conntrack entries",
                               f"hostPort {m.host_port}: {e}") from e


class Portmap:
    name = "portmap"
    versions = spec.SUPPORTED_VERSIONS

    def add(self, a: CmdArgs) -> dict[str, Any]:
        prev = a.prev_result()
        if prev is None:
            raise CNIError(spec.ERR_INVALID_CONFIG, "portmap must be chained",
                           "it needs prevResult from an interface plugin before it in the conflist")
        mappings, snat, masq_all = load(a)
        if not mappings:
            return prev
        ips = container_ips(prev)
        if not ips:
            raise CNIError(spec.ERR_INVALID_CONFIG, "portmap: prevResult has no container address to map to")
        owner = f"{a.network}/{a.container_id}/{a.ifname}"
        try:
            _check_conflicts(owner, mappings)
            nft.run(add_script(owner, mappings, ips, snat, masq_all))
        except nft.NftError as e:
            raise CNIError(spec.ERR_INTERNAL, "portmap: failed to write nftables rules", str(e)) from e
        if snat:
            for iface in prev.get("interfaces", []) or []:
                if not iface.get("sandbox"):
                    try:
                        sysctl.write_iface(4, iface["name"], "route_localnet", 1)
                    except OSError:
                        pass
        _flush_udp_conntrack(mappings)
        return prev

    def delete(self, a: CmdArgs) -> None:
        owner = f"{a.network}/{a.container_id}/{a.ifname}"
        drop(lambda o: o == owner)

    def check(self, a: CmdArgs) -> None:
        mappings, _, _ = load(a)
        if not mappings:
            return
        owner = f"{a.network}/{a.container_id}/{a.ifname}"
        have = {(n, k) for n, k, o in _elements() if o == owner}
        for m in mappings:
            if not any(k in have for k in _keys(m)):
                raise CNIError(spec.ERR_INVALID_CONFIG, f"portmap: mapping {m.host_port}/{m.protocol} is missing")

    def status(self, a: CmdArgs) -> None:
        import shutil
        if not shutil.which("nft"):
            raise CNIError(spec.ERR_NOT_AVAILABLE, "portmap: nft is not installed")

    def gc(self, a: CmdArgs) -> None:
        keep = {f"{a.network}/{cid}/{ifn}" for cid, ifn in valid_attachments(a.conf)}
        drop(lambda o: o.startswith(f"{a.network}/") and o not in keep)


PLUGIN = Portmap()
