"""Plugin name -> plugin object, imported lazily so a plugin process loads only what it runs."""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any

MODULES = {
    "loopback": "loopback",
    "bridge": "bridge",
    "host-local": "host_local",
    "portmap": "portmap",
    "bandwidth": "bandwidth",
}


def get(name: str) -> Any:
    mod = MODULES.get(name)
    if mod is None:
        return None
    return importlib.import_module(f"gingham.cni.plugins.{mod}").PLUGIN
