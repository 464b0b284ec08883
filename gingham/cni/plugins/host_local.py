"""host-local IPAM: addresses from range sets, kept in the reference's on-disk layout.

Beyond the reference: GC (releases what `cni.dev/valid-attachments` does not name)
and STATUS (code 50 when some range set has no free address left).
"""

from __future__ import annotations

import ipaddress

from ...records import record
from ...ipam.allocator import AllocationError, allocate
from ...ipam.ranges import RangeError, RangeSet, free_count, parse_range_sets
from ...ipam.store import DiskStore
from .. import config as cfg
from .. import spec
from ..skel import CmdArgs
from ..spec import CNIError

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any

DEFAULT_DATA_DIR = "/var/lib/cni/networks"


@record
class IPAMConfig:
    network: str
    sets: tuple[RangeSet, ...]
    routes: list[dict[str, Any]]
    data_dir: str
    resolv_conf: str


def load(a: CmdArgs) -> IPAMConfig:
    raw = cfg.get_obj(a.conf, "ipam")
    if not raw:
        raise CNIError(spec.ERR_INVALID_CONFIG, "missing ipam section", "host-local reads its config from \"ipam\"")
    ranges = list(cfg.get_list(raw, "ranges", "ipam."))
    if raw.get("subnet"):
        legacy = {k: raw[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in raw}
        ranges.insert(0, [legacy])
    rt = a.runtime_config()
    if rt.get("ipRanges"):
        if not isinstance(rt["ipRanges"], list):
            raise CNIError(spec.ERR_INVALID_CONFIG, "runtimeConfig.ipRanges must be a list of range lists")
        ranges = list(rt["ipRanges"]) + ranges
    if not ranges:
        raise CNIError(spec.ERR_INVALID_CONFIG, "no IP ranges specified",
                       "set ipam.ranges, e.g. [[{\"subnet\": \"10.22.0.0/16\"}]]")
    try:
        sets = parse_range_sets(ranges)
    except RangeError as e:
        raise CNIError(spec.ERR_INVALID_CONFIG, "invalid IP range", str(e)) from e
    routes = []
    for i, r in enumerate(cfg.get_list(raw, "routes", "ipam.")):
        if not isinstance(r, dict) or "dst" not in r:
            raise CNIError(spec.ERR_INVALID_CONFIG, f"invalid ipam.routes[{i}]", "a route needs \"dst\"")
        route = {"dst": str(cfg.parse_cidr(r["dst"], f"ipam.routes[{i}].dst"))}
        if r.get("gw"):
            route["gw"] = str(cfg.parse_ip(r["gw"], f"ipam.routes[{i}].gw"))
        routes.append(route)
    return IPAMConfig(a.network, sets, routes, cfg.get_str(raw, "dataDir", DEFAULT_DATA_DIR, "ipam."),
                      cfg.get_str(raw, "resolvConf", "", "ipam."))


def requested_ips(a: CmdArgs) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out = []
    env = cfg.load_cni_args(a.cni_args(), {"IP", "MAC", "K8S_POD_NAMESPACE", "K8S_POD_NAME",
                                            "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"})
    for item in filter(None, env.get("IP", "").split(",")):
        out.append(cfg.parse_ip(item, "CNI_ARGS IP"))
    for i, item in enumerate((cfg.get_obj(cfg.get_obj(a.conf, "args"), "cni")).get("ips") or []):
        out.append(cfg.parse_ip(item, f"args.cni.ips[{i}]"))
    for i, item in enumerate(a.runtime_config().get("ips") or []):
        out.append(cfg.parse_ip(item, f"runtimeConfig.ips[{i}]"))
    return out


def parse_resolv_conf(path: str) -> dict[str, Any]:
    dns: dict[str, Any] = {"nameservers": [], "search": [], "options": []}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise CNIError(spec.ERR_IO, f"cannot read resolvConf {path}", str(e)) from e
    for line in lines:
        parts = line.split("#")[0].split()
        if len(parts) < 2:
            continue
        key, vals = parts[0], parts[1:]
        if key == "nameserver":
            dns["nameservers"].append(vals[0])
        elif key == "domain":
            dns["domain"] = vals[0]
        elif key == "search":
            dns["search"].extend(vals)
        elif key == "options":
            dns["options"].extend(vals)
    return {k: v for k, v in dns.items() if v}


def valid_attachments(conf: dict[str, Any]) -> set[tuple[str, str]]:
    """GC's keep-list; both the spec's key and the legacy name libcni also sends."""
    out = set()
    for key in ("cni.dev/valid-attachments", "cni.dev/attachments"):
        for att in conf.get(key) or []:
            if isinstance(att, dict):
                out.add((str(att.get("containerID", "")), str(att.get("ifname", ""))))
    return out


class HostLocal:
    name = "host-local"
    versions = spec.SUPPORTED_VERSIONS

    def add(self, a: CmdArgs) -> dict[str, Any]:
        c = load(a)
        want = requested_ips(a)
        dns = parse_resolv_conf(c.resolv_conf) if c.resolv_conf else None  # before anything is reserved
        try:
            with DiskStore(c.data_dir, c.network) as store:
                allocs = allocate(store, c.sets, a.container_id, a.ifname, want)
        except AllocationError as e:
            raise CNIError(spec.ERR_TRY_AGAIN if e.exhausted else spec.ERR_INVALID_CONFIG,
                           "failed to allocate an IP address", str(e)) from e
        except OSError as e:
            raise CNIError(spec.ERR_IO, f"cannot use IPAM data dir {c.data_dir}", str(e)) from e
        ips = []
        for al in allocs:
            ip = {"address": f"{al.ip}/{al.range.subnet.prefixlen}"}
            if al.range.gateway is not None:
                ip["gateway"] = str(al.range.gateway)
            ips.append(ip)
        result: dict[str, Any] = {"cniVersion": "1.1.0", "ips": ips, "routes": c.routes}
        if dns is not None:
            result["dns"] = dns
        return result

    def delete(self, a: CmdArgs) -> None:
        c = load(a)
        try:
            with DiskStore(c.data_dir, c.network) as store:
                store.release_by_id(a.container_id, a.ifname)
        except OSError as e:
            raise CNIError(spec.ERR_IO, f"cannot release addresses in {c.data_dir}", str(e)) from e

    def check(self, a: CmdArgs) -> None:
        c = load(a)
        with DiskStore(c.data_dir, c.network) as store:
            if not store.owned_by(a.container_id, a.ifname):
                raise CNIError(spec.ERR_UNKNOWN_CONTAINER, "no IP address reserved",
                               f"host-local holds no address for {a.container_id}/{a.ifname} "
                               f"in {store.dir}")

    def status(self, a: CmdArgs) -> None:
        c = load(a)
        try:
            with DiskStore(c.data_dir, c.network) as store:
                used = [ip for ip, _, _ in store.entries()]
        except OSError as e:
            raise CNIError(spec.ERR_NOT_AVAILABLE, f"IPAM data dir {c.data_dir} is not usable", str(e)) from e
        for i, rs in enumerate(c.sets):
            if free_count(rs, used) <= 0:
                raise CNIError(spec.ERR_NOT_AVAILABLE, "IP pool exhausted",
                               f"range set {i} ({', '.join(str(r.subnet) for r in rs)}) has no free address")

    def gc(self, a: CmdArgs) -> None:
        c = load(a)
        keep = valid_attachments(a.conf)
        keep_cids = {cid for cid, _ in keep}
        with DiskStore(c.data_dir, c.network) as store:
            for ip, cid, ifname in list(store.entries()):
                alive = (cid, ifname) in keep if ifname is not None else cid in keep_cids
                if not alive:
                    store.release(ip)


PLUGIN = HostLocal()
