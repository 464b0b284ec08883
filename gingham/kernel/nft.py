"""nftables through libnftables (or the `nft` command): one transaction, applied atomically.

Writers build a `kernel.nftables.Transaction`; this is the only place that hands one to the
kernel and reads nft's errors: callers get `NftError` with the script that failed, or
`NftNotFound` for a missing object.
"""

from __future__ import annotations

import _thread
import ctypes

from .. import fastjson as json  # json's defaults without importing re (a plugin process pays for it)
from .nftables import Transaction

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any


class NftError(Exception):
    def __init__(self, msg: str, script: str = "") -> None:
        super().__init__(msg)
        self.script = script


class NftNotFound(NftError):
    pass


def binary() -> str:
    import shutil  # the plugins' path never needs it: libnftables is used in-process
    path = shutil.which("nft") or "/usr/sbin/nft"
    return path


class _Lib:
    """libnftables (the library the `nft` command is built on) through ctypes.

    Saves a fork+exec per transaction, which is most of an ADD's nft cost. One context per
    output mode, used under a lock (a context is not thread-safe). Its netlink socket
    belongs to the namespace of the thread that first uses it, so the agent uses it only
    from the host context, never inside `netns.entered`.
    """

    JSON = 1 << 4

    def __init__(self) -> None:
        try:  # the soname first: find_library runs `ldconfig -p`, a process per plugin call
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError:
            from ctypes.util import find_library
            lib = ctypes.CDLL(find_library("nftables") or "libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for f in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, f).argtypes = [ctypes.c_void_p]
        for f in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, f).argtypes = [ctypes.c_void_p]
            getattr(lib, f).restype = ctypes.c_char_p
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib = lib
        self.lock = _thread.allocate_lock()  # threading's Lock, without importing threading
        self.ctx: dict[bool, int] = {}

    def _ctx(self, as_json: bool) -> int:
        if as_json not in self.ctx:
            c = self.lib.nft_ctx_new(0)
            self.lib.nft_ctx_buffer_output(c)
            self.lib.nft_ctx_buffer_error(c)
            if as_json:
                self.lib.nft_ctx_output_set_flags(c, self.JSON)
            self.ctx[as_json] = c
        return self.ctx[as_json]

    def run(self, cmd: str, as_json: bool = False) -> tuple[int, str, str]:
        with self.lock:
            c = self._ctx(as_json)
            rc = self.lib.nft_run_cmd_from_buffer(c, cmd.encode())
            out = (self.lib.nft_ctx_get_output_buffer(c) or b"").decode()
            err = (self.lib.nft_ctx_get_error_buffer(c) or b"").decode()
        return rc, out, err


_lib: _Lib | None = None
_lib_failed = False


def _exec(cmd: str, as_json: bool = False) -> tuple[int, str, str]:
    """Runs nft commands in-process when libnftables loads, else through the nft binary."""
    global _lib, _lib_failed
    if _lib is None and not _lib_failed:
        try:
            _lib = _Lib()
        except (OSError, AttributeError):
            _lib_failed = True
    if _lib is not None:
        return _lib.run(cmd, as_json)
    import subprocess
    args = [binary(), "-j"] if as_json else [binary()]
    r = subprocess.run([*args, "-f", "-"], input=cmd, capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def run(tx: Transaction | str) -> None:
    """Applies a transaction (or nft -f text) whole: all of it or none of it."""
    script = str(tx)
    if not script.strip():
        return
    rc, _, err = _exec(script)
    if rc != 0:
        msg = err.strip()
        cls = NftNotFound if "No such file or directory" in msg else NftError
        raise cls(f"nft transaction failed: {msg}", script)


def list_json(*what: str) -> list[dict[str, Any]]:
    """`nft -j list ...` as its list of objects; a missing table/map gives []."""
    rc, out, err = _exec("list " + " ".join(what), as_json=True)
    if rc != 0:
        if "No such file or directory" in err:
            return []
        raise NftError(f"nft list {' '.join(what)}: {err.strip()}")
    return list(json.loads(out).get("nftables", [])) if out.strip() else []


def list_table_in(netns_path: str, family: str, table: str) -> str | None:
    """`nft list table` as another network namespace holds it (the nft command run inside it,
    since a libnftables context stays in the namespace it was made in); None if it has none."""
    import subprocess
    r = subprocess.run(["nsenter", f"--net={netns_path}", binary(), "list", "table", family, table],
                       capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def _key(k: Any) -> str:
    """An element key as nft's text syntax writes it (concatenations joined by ' . ')."""
    if isinstance(k, dict) and "concat" in k:
        return " . ".join(_key(x) for x in k["concat"])
    if isinstance(k, dict) and "prefix" in k:
        return f"{k['prefix']['addr']}/{k['prefix']['len']}"
    return str(k)


def elements(family: str, table: str) -> dict[str, list[tuple[str, str]]]:
    """Every set's and map's elements in a table, as (key, comment), from one `nft list`.

    A missing table gives {}. Map values are left out: owners are found by comment.
    """
    out: dict[str, list[tuple[str, str]]] = {}
    for obj in list_json("table", family, table):
        body = obj.get("map") or obj.get("set")
        if not body:
            continue
        elems = out.setdefault(body["name"], [])
        for el in body.get("elem", []) or []:
            if "map" in obj and isinstance(el, list):
                el = el[0]
            comment = ""
            if isinstance(el, dict) and "elem" in el:
                comment = el["elem"].get("comment", "")
                el = el["elem"]["val"]
            elems.append((_key(el), comment))
    return out


def delete_elements_where(family: str, table: str, drop: Any) -> int:
    """Deletes, in one transaction, every element whose owner comment `drop(comment)` picks."""
    tx = Transaction(family, table)
    for name, elems in elements(family, table).items():
        for key, comment in elems:
            if comment and drop(comment):
                tx.delete_element(name, key)
    run(tx)
    return len(tx)
