"""`gingham install-cni`: writes the plugin executables into a CNI bin dir.

Each is a two-line script for this interpreter with `-IS` (no site scan: starting
takes ~10 ms instead of ~20) and the package's own path, so it needs nothing from the
environment it is exec'd in - kubelet and containerd pass a bare one.
"""

from __future__ import annotations

import os
import site
import sys

import gingham

PLUGINS = ("loopback", "bridge", "host-local", "portmap", "bandwidth")
DEFAULT_BIN_DIR = "/opt/cni/bin"


def script(plugin: str) -> str:
    paths = [gingham.source_root()] + [p for p in site.getsitepackages() if os.path.isdir(p)]
    return (f"#!{sys.executable} -IS\n"
            f"import sys; sys.path[:0] = {paths!r}\n"
            f"from gingham.cni.shim import main; main({plugin!r})\n")


def install(bin_dir: str = DEFAULT_BIN_DIR) -> list[str]:
    os.makedirs(bin_dir, exist_ok=True)
    out = []
    for p in PLUGINS:
        path = os.path.join(bin_dir, f"gingham-{p}")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(script(p))
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)  # atomic, so a running plugin never sees half a file
        out.append(path)
    return out
