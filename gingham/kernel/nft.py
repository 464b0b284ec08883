"""nftables through the `nft` command: one script is one atomic transaction.

This is the only place that reads nft's stderr; callers get `NftError` with the
script that failed, or `NotFound` for a missing object.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any


class NftError(Exception):
    def __init__(self, msg: str, script: str = "") -> None:
        super().__init__(msg)
        self.script = script


class NftNotFound(NftError):
    pass


def binary() -> str:
    path = shutil.which("nft") or "/usr/sbin/nft"
    return path


def run(script: str) -> None:
    """Applies `script` (nft -f syntax) in one transaction: all of it or none of it."""
    if not script.strip():
        return
    r = subprocess.run([binary(), "-f", "-"], input=script, capture_output=True, text=True)
    if r.returncode != 0:
        msg = r.stderr.strip()
        cls = NftNotFound if "No such file or directory" in msg else NftError
        raise cls(f"nft transaction failed: {msg}", script)


def list_json(*what: str) -> list[dict[str, Any]]:
    """`nft -j list ...` as its list of objects; a missing table/map gives []."""
    r = subprocess.run([binary(), "-j", "list", *what], capture_output=True, text=True)
    if r.returncode != 0:
        if "No such file or directory" in r.stderr:
            return []
        raise NftError(f"nft list {' '.join(what)}: {r.stderr.strip()}")
    return list(json.loads(r.stdout).get("nftables", []))


def table_exists(family: str, name: str) -> bool:
    return bool(list_json("table", family, name))


def map_elements(family: str, table: str, name: str) -> list[tuple[Any, Any, str]]:
    """(key, value, comment) of every element of a map (value None for sets)."""
    out = []
    for obj in list_json("map", family, table, name) or []:
        body = obj.get("map") or obj.get("set")
        if not body:
            continue
        for el in body.get("elem", []) or []:
            comment = ""
            if isinstance(el, list):
                key, val = el
            else:
                key, val = el, None
            if isinstance(key, dict) and "elem" in key:
                comment = key["elem"].get("comment", "")
                key = key["elem"]["val"]
            out.append((key, val, comment))
    return out


def set_elements(family: str, table: str, name: str) -> list[tuple[Any, str]]:
    out = []
    for obj in list_json("set", family, table, name) or []:
        body = obj.get("set")
        if not body:
            continue
        for el in body.get("elem", []) or []:
            comment = ""
            if isinstance(el, dict) and "elem" in el:
                comment = el["elem"].get("comment", "")
                el = el["elem"]["val"]
            out.append((el, comment))
    return out


def quote(s: str) -> str:
    """An nft string literal (comments)."""
    return '"' + s.replace('"', "'") + '"'
