"""Each error path through the real `gingham` command: one line on stderr, no traceback, and an
exit code that tells the kinds apart (1 failed, 2 bad input, 3 not found). Nothing here
builds anything: no lab exists under the temporary lab root, and every manifest is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def gingham(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GINGHAM_LAB_ROOT=str(tmp_path / "labs"))
    env.pop("GINGHAM_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "gingham.cli", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)


CASES = [
    # (args, exit code, words the line must hold)
    (["lab", "get", "pods", "--name", "nolab"], 3, ["no lab named 'nolab'", "gingham lab list"]),
    (["lab", "probe", "a/b", "c/d", "80", "--name", "nolab"], 3, ["no lab named 'nolab'"]),
    (["lab", "exec", "a/b", "--name", "nolab", "--", "true"], 3, ["no lab named 'nolab'"]),
    (["lab", "apply", "-f", "bad.yaml", "--name", "nolab"], 3, ["no lab named 'nolab'"]),
    (["lab", "trace", "a/b", "c/d", "80", "--name", "nolab"], 3, ["no lab named 'nolab'"]),
    (["netpol", "matrix", "--lab", "nolab"], 3, ["no lab named 'nolab'"]),
    (["lab", "get", "pods", "--name", "Bad_Name"], 2, ["lab name 'Bad_Name'", "lowercase"]),
    (["lab", "up", "-f", "missing.yaml"], 2, ["missing.yaml", "cannot read"]),
    (["lab", "up", "-f", "bad.yaml"], 2, ["bad.yaml", "not valid YAML", "flow sequence on line 2"]),
    (["lab", "up", "-f", "list.yaml"], 2, ["list.yaml", "document 1", "mapping"]),
    (["lab", "up", "-f", "wrongtype.yaml"], 2, ["wrongtype.yaml", "Service/web", "spec.ports[0].port"]),
    (["lab", "up", "-f", "binary.yaml"], 2, ["binary.yaml", "not UTF-8"]),
    (["lab", "up", "-f", "date.yaml"], 2, ["date.yaml", "metadata.annotations.when", "a date"]),
    (["lab", "up", "-f", "bad.yaml", "--etcd-members", "2"], 2, ["--etcd-members 2", "1, 3 or 5"]),
    (["lab", "get", "widgets"], 2, ["invalid choice: 'widgets'", "gingham lab get --help"]),
    (["lab", "probe", "a", "b", "port"], 2, ["invalid int value: 'port'"]),
    (["lab", "get", "pods", "--", "x"], 2, ["lab exec"]),
    (["nosuchcommand"], 2, ["invalid choice"]),
    (["netpol", "explain", "a/b", "c/d", "80", "-f", "bad.yaml"], 2, ["bad.yaml", "not valid YAML"]),
    (["cni", "add", "missing.conflist", "/run/netns/x"], 1, ["error 5", "missing.conflist"]),
    (["cni", "add", "c.conflist", "/run/netns/x", "--cap-args", "{bad"], 1, ["error 7", "--cap-args"]),
    (["install-cni", "--bin-dir", "/proc/no/such/dir"], 1, ["/proc/no", "No such file"]),
    (["agent", "--etcd", "http://127.0.0.1:9"], 2, ["--node"]),
]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "bad.yaml").write_text("kind: Service\nmetadata: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "wrongtype.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: [80]}]}\n")
    (tmp_path / "binary.yaml").write_bytes(b"apiVersion: v1\nkind: \xff\n")
    (tmp_path / "date.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, annotations: {when: 2024-01-02}}\n"
        "spec: {ports: [{port: 80}]}\n")
    (tmp_path / "c.conflist").write_text('{"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "none"}]}')
    return tmp_path


@pytest.mark.parametrize("args,code,words", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_error_is_one_line_and_a_code(files: Path, args: list[str], code: int, words: list[str]) -> None:
    r = gingham(files, *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code, r.stderr
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_version_and_debug(files: Path) -> None:
    r = gingham(files, "--version")
    assert (r.returncode, r.stdout.strip()) == (0, "gingham 0.1.0")
    # --debug anywhere before `--` shows the traceback of what went wrong, here an unwritable bin dir
    r = gingham(files, "install-cni", "--bin-dir", "/proc/no/such/dir", "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr
