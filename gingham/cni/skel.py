"""The plugin skeleton: CNI environment + stdin in, result or error + exit status out.

`dispatch` has no I/O of its own (h11-style): tests call it with a dict for the
environment, and the process entry point `run` is a thin wrapper around it. The
environment is checked against one table, like libcni's skel, so every plugin gets
the same messages and codes for bad input.
"""

from __future__ import annotations

import os
import sys

from .. import fastjson as json  # json's defaults without importing re (a plugin process pays for it)
from ..records import factory, record
from . import spec
from .spec import CNIError

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping, Protocol

VERBS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")


def name_ok(v: str) -> bool:
    """libcni's rule for container ids and network names, [a-zA-Z0-9][a-zA-Z0-9_.-]* (checked
    by hand: a plugin process does not import `re`)."""
    return bool(v) and v[0] in _ALNUM and all(c in _NAME_CHARS for c in v)


def _check_ifname(v: str) -> str | None:
    if len(v) > 15:
        return f"interface name {v!r} is longer than 15 characters"
    if v in (".", "..") or any(c in "/:" or c.isspace() for c in v):
        return f"interface name {v!r} contains '/', ':' or whitespace, or is '.' or '..'"
    return None


def _check_container_id(v: str) -> str | None:
    if not name_ok(v):
        return f"container id {v!r} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
    return None


# name -> (verbs that require it, validator returning a message or None)
ENV_TABLE: dict[str, tuple[frozenset[str], Callable[[str], str | None] | None]] = {
    "CNI_COMMAND": (frozenset(VERBS), None),
    "CNI_CONTAINERID": (frozenset({"ADD", "DEL", "CHECK"}), _check_container_id),
    "CNI_NETNS": (frozenset({"ADD", "CHECK"}), None),
    "CNI_IFNAME": (frozenset({"ADD", "DEL", "CHECK"}), _check_ifname),
    "CNI_ARGS": (frozenset(), None),
    "CNI_PATH": (frozenset({"ADD", "DEL", "CHECK", "GC", "STATUS"}), None),
}


@record
class CmdArgs:
    """One invocation: the parsed environment and the network config from stdin."""

    command: str
    container_id: str
    netns: str
    ifname: str
    args: str
    path: str
    stdin: bytes
    conf: dict[str, Any] = factory(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.conf.get("cniVersion", ""))

    @property
    def network(self) -> str:
        return str(self.conf.get("name", ""))

    def cni_args(self) -> dict[str, str]:
        """CNI_ARGS as a dict (K=V;K=V)."""
        out: dict[str, str] = {}
        for part in filter(None, self.args.split(";")):
            if "=" not in part:
                raise CNIError(spec.ERR_INVALID_ENV, "invalid CNI_ARGS", f"pair {part!r} has no '='")
            k, v = part.split("=", 1)
            out[k] = v
        return out

    def prev_result(self) -> dict[str, Any] | None:
        prev = self.conf.get("prevResult")
        if not prev:
            return None
        if not isinstance(prev, dict):
            raise CNIError(spec.ERR_DECODE, "prevResult must be an object")
        return spec.result_to_internal({"cniVersion": self.version, **prev})

    def runtime_config(self) -> dict[str, Any]:
        rc = self.conf.get("runtimeConfig") or {}
        if not isinstance(rc, dict):
            raise CNIError(spec.ERR_INVALID_CONFIG, "runtimeConfig must be an object")
        return rc


if TYPE_CHECKING:
    class Plugin(Protocol):
        name: str
        versions: tuple[str, ...]

        def add(self, a: CmdArgs) -> dict[str, Any]: ...
        def delete(self, a: CmdArgs) -> None: ...
        def check(self, a: CmdArgs) -> None: ...
        def status(self, a: CmdArgs) -> None: ...
        def gc(self, a: CmdArgs) -> None: ...


def parse_env(env: Mapping[str, str], stdin: bytes) -> CmdArgs:
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CNIError(spec.ERR_INVALID_ENV, "required env variables [CNI_COMMAND] missing")
    if command not in VERBS:
        raise CNIError(spec.ERR_INVALID_ENV, f"unknown CNI_COMMAND {command!r}",
                       f"expected one of {', '.join(VERBS)}")
    missing = []
    for name, (required_for, check) in ENV_TABLE.items():
        value = env.get(name, "")
        if not value:
            if command in required_for:
                missing.append(name)
            continue
        if check and (problem := check(value)):
            raise CNIError(spec.ERR_INVALID_ENV, f"invalid {name}", problem)
    if missing:
        raise CNIError(spec.ERR_INVALID_ENV, f"required env variables [{', '.join(missing)}] missing")
    return CmdArgs(command, env.get("CNI_CONTAINERID", ""), env.get("CNI_NETNS", ""),
                   env.get("CNI_IFNAME", ""), env.get("CNI_ARGS", ""), env.get("CNI_PATH", ""), stdin)


def decode_conf(stdin: bytes) -> dict[str, Any]:
    try:
        conf = json.loads(stdin or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise CNIError(spec.ERR_DECODE, "failed to decode network configuration",
                       f"stdin is not valid JSON: {e}") from e
    except RecursionError:
        raise CNIError(spec.ERR_DECODE, "failed to decode network configuration",
                       "stdin nests deeper than a network configuration can") from None
    if not isinstance(conf, dict):
        raise CNIError(spec.ERR_DECODE, "failed to decode network configuration",
                       "stdin must hold a JSON object")
    return conf


def _check_conf(a: CmdArgs, plugin: Plugin) -> None:
    v = a.conf.get("cniVersion", "")
    if not isinstance(v, str) or not v:
        raise CNIError(spec.ERR_INCOMPATIBLE_VERSION, "missing cniVersion",
                       f"the network config must set cniVersion to one of {list(plugin.versions)}")
    spec.require_supported(v, plugin.versions)
    name = a.conf.get("name")
    if a.command != "VERSION":
        if not isinstance(name, str) or not name_ok(name):
            raise CNIError(spec.ERR_INVALID_CONFIG, "invalid network name",
                           f"name {name!r} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")


NS_GET_NSTYPE = 0xB703  # ioctl(2) on a namespace file: its CLONE_NEW* type
CLONE_NEWNET = 0x40000000


def _check_netns(path: str) -> None:
    """CNI_NETNS names an existing network namespace (code 3 when it is gone, 8 when the path
    is something else: a regular file, another kind of namespace)."""
    import fcntl
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CNIError(spec.ERR_UNKNOWN_CONTAINER, "failed to open netns",
                       f"{path} does not exist; was the pod sandbox removed?") from None
    except OSError as e:
        raise CNIError(spec.ERR_INVALID_NETNS, "failed to open netns", f"{path}: {e.strerror}") from None
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        kind = -1
    finally:
        os.close(fd)
    if kind != CLONE_NEWNET:
        raise CNIError(spec.ERR_INVALID_NETNS, "CNI_NETNS is not a network namespace",
                       f"{path} is {'another kind of namespace' if kind > 0 else 'not a namespace file'}")


def _same_netns_as_self(path: str) -> bool:
    try:
        a, b = os.stat(path), os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def dispatch(env: Mapping[str, str], stdin: bytes, plugin: Plugin) -> tuple[bytes, int]:
    """Runs one CNI request; returns (stdout, exit status)."""
    version = "1.1.0"
    try:
        a = parse_env(env, stdin)
        a.conf = decode_conf(stdin)
        if a.command == "VERSION":
            asked = a.conf.get("cniVersion") or "0.1.0"
            return _json({"cniVersion": asked, "supportedVersions": list(plugin.versions)}), 0
        _check_conf(a, plugin)
        version = a.version
        if a.command in ("ADD", "CHECK") and a.netns:
            _check_netns(a.netns)
        if a.command in ("ADD", "CHECK") and a.netns and _same_netns_as_self(a.netns) and \
                env.get("CNI_NETNS_OVERRIDE", "") not in ("1", "true"):
            raise CNIError(spec.ERR_INVALID_NETNS, "CNI_NETNS is the plugin's own network namespace",
                           f"{a.netns} refers to the namespace the plugin runs in; refusing to "
                           "configure the host (set CNI_NETNS_OVERRIDE=1 to allow)")
        if a.command == "ADD":
            result = plugin.add(a)
            return _json(spec.result_to_version(result, version)), 0
        if a.command == "CHECK" and not spec.has_check(version):
            raise CNIError(spec.ERR_INCOMPATIBLE_VERSION, "CHECK is not supported before CNI 0.4.0",
                           f"config version is {version}")
        if a.command in ("STATUS", "GC") and not spec.has_status(version):
            raise CNIError(spec.ERR_INCOMPATIBLE_VERSION, f"{a.command} is not supported before CNI 1.1.0",
                           f"config version is {version}")
        {"DEL": plugin.delete, "CHECK": plugin.check, "STATUS": plugin.status, "GC": plugin.gc}[a.command](a)
        return b"", 0
    except CNIError as e:
        return _json(e.to_dict(version if version in spec.SUPPORTED_VERSIONS else "1.1.0")), 1
    except Exception as e:  # any other failure is still a CNI error, never a traceback alone
        import traceback
        traceback.print_exc(file=sys.stderr)
        err = CNIError(spec.ERR_INTERNAL, f"{plugin.name}: internal error", f"{type(e).__name__}: {e}")
        return _json(err.to_dict(version if version in spec.SUPPORTED_VERSIONS else "1.1.0")), 1


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def run(plugin: Plugin) -> None:
    """Process entry point: env + stdin -> stdout + exit status."""
    data = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    out, rc = dispatch(os.environ, data, plugin)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    sys.exit(rc)
