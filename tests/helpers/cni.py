"""CNI test helpers: plugin configs, networks, and what a run left on disk and on bridges."""

from __future__ import annotations

import json
import os
import subprocess

from gingham.cni.runtime import Network


def bridge_plugin(br: str, subnet: str, data: str, bridge_type: str = "gingham-bridge",
                  ipam_type: str = "gingham-host-local", routes: list[dict[str, str]] | None = None,
                  **extra: object) -> dict[str, object]:
    return {"type": bridge_type, "bridge": br, "isGateway": True, **extra,
            "ipam": {"type": ipam_type, "ranges": [[{"subnet": subnet}]], "dataDir": data,
                     "routes": [{"dst": "0.0.0.0/0"}] if routes is None else routes}}


def net_of(name: str, plugins: list[dict[str, object]], version: str = "1.1.0") -> Network:
    return Network.parse(json.dumps({"cniVersion": version, "name": name, "plugins": plugins}).encode())


def allocations(data: str, net: str) -> list[str]:
    d = os.path.join(data, net)
    if not os.path.isdir(d):
        return []
    return sorted(n for n in os.listdir(d) if n != "lock" and not n.startswith("last_reserved_ip"))


def bridge_ports(br: str) -> list[str]:
    out = json.loads(subprocess.run(["ip", "-j", "link", "show", "master", br], capture_output=True,
                                    text=True).stdout or "[]")
    return [link["ifname"] for link in out]
