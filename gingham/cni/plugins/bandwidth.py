"""bandwidth: tc token buckets on the pod's host veth, the reference's keys and semantics.

ingress (traffic into the pod) is shaped on the host veth's egress; egress (traffic from
the pod) is redirected from the host veth's ingress to an ifb device and shaped there.
Rates are bit/s and bursts bits, as in the `bandwidth` capability.
"""

from __future__ import annotations

import hashlib

from ...kernel import tc
from ...kernel.links import LinkError, Netlink
from .. import config as cfg
from .. import spec
from ..skel import CmdArgs
from ..spec import CNIError

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any

_KEYS = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")


def load(a: CmdArgs) -> dict[str, int]:
    rt = a.runtime_config().get("bandwidth")
    src = rt if isinstance(rt, dict) and rt else a.conf
    where = "runtimeConfig.bandwidth." if src is rt else ""
    bw = {k: cfg.get_int(src, k, 0, 0, None, where) for k in _KEYS}
    for d in ("ingress", "egress"):
        rate, burst = bw[f"{d}Rate"], bw[f"{d}Burst"]
        if bool(rate) != bool(burst):
            raise CNIError(spec.ERR_INVALID_CONFIG, f"invalid {d} shaping",
                           f"{where}{d}Rate and {where}{d}Burst must both be set or both unset")
        if burst and burst // 8 >= 2 ** 32:
            raise CNIError(spec.ERR_INVALID_CONFIG, f"invalid {where}{d}Burst", "burst cannot be more than 4GB")
    return bw


def ifb_name(a: CmdArgs) -> str:
    return "bwp" + hashlib.sha256(f"{a.network}/{a.container_id}".encode()).hexdigest()[:12]


def host_veth(host: Netlink, prev: dict[str, Any]) -> str:
    for iface in prev.get("interfaces", []) or []:
        if iface.get("sandbox"):
            continue
        link = host.link(iface["name"])
        if link is not None and link.kind == "veth":
            return link.name
    raise CNIError(spec.ERR_INVALID_CONFIG, "bandwidth: no host-side veth in prevResult",
                   "chain bandwidth after an interface plugin such as bridge or ptp")


class Bandwidth:
    name = "bandwidth"
    versions = spec.SUPPORTED_VERSIONS

    def add(self, a: CmdArgs) -> dict[str, Any]:
        prev = a.prev_result()
        if prev is None:
            raise CNIError(spec.ERR_INVALID_CONFIG, "bandwidth must be chained", "it needs prevResult")
        bw = load(a)
        if not any(bw.values()):
            return prev
        with Netlink() as host:
            dev = host_veth(host, prev)
            try:
                if bw["ingressRate"]:
                    tc.tbf(dev, bw["ingressRate"], bw["ingressBurst"])
                if bw["egressRate"]:
                    ifb = ifb_name(a)
                    if host.link(ifb) is None:
                        host.add_link(ifb, "ifb")
                    link = host.require(ifb)
                    mtu = host.require(dev).mtu
                    host.set(link.index, f"bring {ifb} up", state="up", mtu=mtu)
                    tc.redirect_ingress(dev, ifb)
                    tc.tbf(ifb, bw["egressRate"], bw["egressBurst"])
                    prev.setdefault("interfaces", []).append({"name": ifb, "mac": link.mac})
            except (tc.TcError, LinkError) as e:
                host.delete(ifb_name(a))
                raise CNIError(spec.ERR_INTERNAL, "bandwidth: failed to set up shaping", str(e)) from e
        return prev

    def delete(self, a: CmdArgs) -> None:
        with Netlink() as host:
            host.delete(ifb_name(a))

    def check(self, a: CmdArgs) -> None:
        prev = a.prev_result()
        bw = load(a)
        if prev is None or not any(bw.values()):
            return
        with Netlink() as host:
            dev = host_veth(host, prev)
            if bw["ingressRate"] and not any(q.get("kind") == "tbf" for q in tc.qdiscs(dev)):
                raise CNIError(spec.ERR_INVALID_CONFIG, f"bandwidth: no tbf qdisc on {dev}")
            if bw["egressRate"] and not any(q.get("kind") == "tbf" for q in tc.qdiscs(ifb_name(a))):
                raise CNIError(spec.ERR_INVALID_CONFIG, f"bandwidth: no tbf qdisc on {ifb_name(a)}")

    def status(self, a: CmdArgs) -> None:
        return None

    def gc(self, a: CmdArgs) -> None:
        return None


PLUGIN = Bandwidth()
