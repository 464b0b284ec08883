"""loopback: brings `lo` up in the pod's namespace (and down again on DEL)."""

from __future__ import annotations


from ...kernel import netns
from ...kernel.links import Netlink
from .. import spec
from ..skel import CmdArgs
from ..spec import CNIError

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any


class Loopback:
    name = "loopback"
    versions = spec.SUPPORTED_VERSIONS

    def add(self, a: CmdArgs) -> dict[str, Any]:
        try:
            with netns.entered(a.netns), Netlink() as pod:
                lo = pod.require("lo")
                pod.set(lo.index, "bring lo up", state="up")
        except netns.NetnsNotFound as e:
            raise CNIError(spec.ERR_UNKNOWN_CONTAINER, "failed to open netns", str(e)) from e
        prev = a.prev_result()
        if prev is not None:
            return prev
        return {"cniVersion": "1.1.0",
                "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": a.netns}],
                "ips": [{"address": "127.0.0.1/8", "interface": 0}, {"address": "::1/128", "interface": 0}]}

    def delete(self, a: CmdArgs) -> None:
        if not a.netns or not netns.exists(a.netns):
            return
        with netns.entered(a.netns), Netlink() as pod:
            lo = pod.link("lo")
            if lo is not None:
                pod.set(lo.index, "bring lo down", state="down")

    def check(self, a: CmdArgs) -> None:
        try:
            with netns.entered(a.netns), Netlink() as pod:
                if not pod.require("lo").up:
                    raise CNIError(spec.ERR_INVALID_CONFIG, "lo is down in " + a.netns)
        except netns.NetnsNotFound as e:
            raise CNIError(spec.ERR_UNKNOWN_CONTAINER, "netns is gone", str(e)) from e

    def status(self, a: CmdArgs) -> None:
        return None

    def gc(self, a: CmdArgs) -> None:
        return None


PLUGIN = Loopback()
