"""Running a plugin: find its binary on CNI_PATH, exec it, read its answer.

Used by the runtime side for every plugin of a conflist and by main plugins for their
IPAM delegate. A delegate that is one of gingham's own plugins runs in-process with the
same env and stdin (what the exec would do, minus the process start).
"""

from __future__ import annotations

import errno
import os
import time

from .. import fastjson as json  # json's defaults without importing re (a plugin process pays for it)
from . import spec
from .spec import CNIError

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any, Mapping


def find(plugin_type: str, cni_path: str) -> str:
    if "/" in plugin_type or "\\" in plugin_type:
        raise CNIError(spec.ERR_INVALID_CONFIG, f"invalid plugin type {plugin_type!r}",
                       "type is a binary name and must not contain '/' or '\\'")
    dirs = [d for d in cni_path.split(":") if d]
    for d in dirs:
        p = os.path.join(d, plugin_type)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise CNIError(spec.ERR_INVALID_CONFIG, f"failed to find plugin {plugin_type!r}",
                   f"no executable {plugin_type} in CNI_PATH {dirs}")


def exec_plugin(path: str, env: Mapping[str, str], stdin: bytes, timeout: float = 120) -> bytes:
    """Runs a plugin binary; returns stdout on success, raises its CNI error otherwise."""
    import subprocess  # a plugin whose delegate runs in-process never needs it
    for attempt in range(5):
        try:
            p = subprocess.run([path], input=stdin, env=dict(env), capture_output=True, timeout=timeout)
            break
        except OSError as e:
            if e.errno == errno.ETXTBSY and attempt < 4:  # libcni retries "text file busy" too
                time.sleep(1)
                continue
            raise CNIError(spec.ERR_IO, f"cannot execute plugin {path}", str(e)) from e
        except subprocess.TimeoutExpired as e:
            raise CNIError(spec.ERR_TRY_AGAIN, f"plugin {path} timed out after {timeout}s") from e
    if p.returncode != 0:
        try:
            err = json.loads(p.stdout or b"{}")
        except ValueError:
            err = {}
        if isinstance(err, dict) and "code" in err:
            raise CNIError.from_dict(err)
        text = (p.stderr or p.stdout).decode(errors="replace").strip()
        raise CNIError(spec.ERR_INTERNAL, f"plugin {os.path.basename(path)} failed (exit {p.returncode})",
                       text[-2000:])
    return p.stdout


def delegate(plugin_type: str, command: str, env: Mapping[str, str], stdin: bytes) -> dict[str, Any] | None:
    """Runs an IPAM (or other) delegate for `command`; ADD returns its parsed result."""
    denv = dict(env)
    denv["CNI_COMMAND"] = command
    own = _in_process(plugin_type)
    if own is not None:
        from .skel import dispatch
        out, rc = dispatch(denv, stdin, own)
        if rc != 0:
            raise CNIError.from_dict(json.loads(out))
    else:
        out = exec_plugin(find(plugin_type, denv.get("CNI_PATH", "")), denv, stdin)
    if command != "ADD":
        return None
    try:
        return spec.result_to_internal(json.loads(out))
    except ValueError as e:
        raise CNIError(spec.ERR_DECODE, f"cannot decode the result of {plugin_type}", str(e)) from e


def _in_process(plugin_type: str) -> Any:
    if not plugin_type.startswith("gingham-"):
        return None
    from .plugins import registry
    return registry.get(plugin_type[len("gingham-"):])
