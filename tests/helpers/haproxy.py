"""`haproxy -c` on a compiled configuration, with its files written where it names them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from gingham.ingress import certs
from gingham.ingress.haproxy import ProxyConfig


def assert_haproxy_accepts(compile_in: Callable[[str], ProxyConfig], tmp_path: Path) -> None:
    """Compiles for `tmp_path` (the files' directory), writes everything and checks it as the agent does."""
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (scripts/setup.sh installs it)")
    cfg = compile_in(str(tmp_path))
    (tmp_path / "certs").mkdir()
    for name, data in cfg.files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "default.pem").write_bytes(b"".join(certs.make_cert(["default.invalid"])))
    (tmp_path / "haproxy.cfg").write_text(cfg.text)
    r = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
