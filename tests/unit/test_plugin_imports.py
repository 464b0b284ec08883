"""A CNI plugin process loads only what it runs: not the lab, the agent, the YAML parser, nor
the heavy standard modules a plugin call would pay for on every ADD and DEL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gingham
from gingham.cni.install import PLUGINS

FORBIDDEN = ("gingham.lab", "gingham.agent", "gingham.model", "gingham.sources", "gingham.services",
             "gingham.netpol", "gingham.dns", "yaml", "dataclasses", "typing", "subprocess", "threading",
             "http", "asyncio", "inspect", "re", "enum", "json")


def loaded_by(plugin: str) -> set[str]:
    code = ("import sys; sys.path[:0] = [%r]\n"
            "from gingham.cni.plugins import registry\nfrom gingham.cni.skel import dispatch\n"
            "registry.get(%r)\nprint('\\n'.join(sys.modules))" % (gingham.source_root(), plugin))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_bridge_and_host_local_import_little() -> None:
    for plugin in ("bridge", "host-local", "loopback"):
        mods = loaded_by(plugin)
        bad = sorted(m for m in mods if m in FORBIDDEN or m.startswith(tuple(f + "." for f in FORBIDDEN)))
        assert not bad, f"gingham-{plugin} imports {bad}"


def test_no_plugin_imports_the_lab_or_the_agent() -> None:
    for plugin in PLUGINS:
        mods = loaded_by(plugin)
        assert not [m for m in mods if m.startswith(("gingham.lab", "gingham.agent", "yaml"))], plugin


def test_plugins_run_from_a_copy_of_the_bin_dir(tmp_path: Path) -> None:
    """A CNI bin dir is often copied by an init container: the copies answer as the originals."""
    from gingham.cni import install
    first, copy = str(tmp_path / "a"), str(tmp_path / "b")
    install.install(first)
    shutil.copytree(first, copy)
    shutil.rmtree(first)
    for plugin in PLUGINS:
        r = subprocess.run([os.path.join(copy, f"gingham-{plugin}")], input=b'{"cniVersion": "1.0.0"}',
                           env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"}, capture_output=True, check=True)
        assert "1.1.0" in json.loads(r.stdout)["supportedVersions"], plugin
