"""The runtime side of CNI, as libcni/cnitool/kubelet do it: conflists, chaining, cache, GC.

A `Network` is a loaded conflist. `add`/`delete`/`check` run its plugins (in order,
reverse for DEL) with `prevResult` and the declared capabilities' runtimeConfig; the
final ADD result is cached where libcni caches it, in the same format, so that either
runtime can tear down what the other set up.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any

from . import invoke, spec
from .spec import CNIError

DEFAULT_CACHE_DIR = "/var/lib/cni"
DEFAULT_CNI_PATH = "/opt/cni/bin"


@dataclass
class Attachment:
    container_id: str
    netns: str
    ifname: str = "eth0"
    args: list[tuple[str, str]] = field(default_factory=list)
    cap_args: dict[str, Any] = field(default_factory=dict)

    def cni_args(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.args)


def parse_args(raw: str) -> list[tuple[str, str]]:
    out = []
    for part in filter(None, raw.split(";")):
        if "=" not in part:
            raise CNIError(spec.ERR_INVALID_ENV, "invalid CNI args", f"{part!r} is not K=V")
        k, v = part.split("=", 1)
        out.append((k, v))
    return out


@dataclass
class Network:
    name: str
    version: str
    plugins: list[dict[str, Any]]
    raw: bytes
    disable_check: bool = False
    disable_gc: bool = False

    @classmethod
    def load(cls, path: str) -> "Network":
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise CNIError(spec.ERR_IO, f"cannot read network config {path}", str(e)) from e
        return cls.parse(raw, path)

    @classmethod
    def parse(cls, raw: bytes, where: str = "<conflist>") -> "Network":
        try:
            conf = json.loads(raw)
        except json.JSONDecodeError as e:
            raise CNIError(spec.ERR_DECODE, f"{where}: not valid JSON", str(e)) from e
        if not isinstance(conf, dict):
            raise CNIError(spec.ERR_DECODE, f"{where}: the config must be a JSON object")
        if "plugins" not in conf and "type" in conf:  # a single-plugin .conf file
            plugin = {k: v for k, v in conf.items() if k not in ("cniVersion", "name")}
            conf = {"cniVersion": conf.get("cniVersion", ""), "name": conf.get("name"), "plugins": [plugin]}
        name = conf.get("name")
        if not isinstance(name, str) or not name:
            raise CNIError(spec.ERR_INVALID_CONFIG, f"{where}: the network has no name")
        plugins = conf.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise CNIError(spec.ERR_INVALID_CONFIG, f"{where}: \"plugins\" must be a non-empty list")
        for i, p in enumerate(plugins):
            if not isinstance(p, dict) or not isinstance(p.get("type"), str) or not p["type"]:
                raise CNIError(spec.ERR_INVALID_CONFIG, f"{where}: plugins[{i}] has no \"type\"")
        return cls(name, select_version(conf, where), plugins, raw,
                   bool(conf.get("disableCheck")), bool(conf.get("disableGC")))

    # -- per-plugin request configs (libcni buildOneConfig) ------------------------
    def plugin_conf(self, plugin: dict[str, Any], cap_args: dict[str, Any] | None,
                    prev: dict[str, Any] | None) -> dict[str, Any]:
        conf = {k: v for k, v in plugin.items() if k != "capabilities"}
        conf["cniVersion"] = self.version
        conf["name"] = self.name
        caps = plugin.get("capabilities") or {}
        rc = {k: v for k, v in (cap_args or {}).items() if caps.get(k)}
        if rc:
            conf["runtimeConfig"] = rc
        if prev is not None:
            conf["prevResult"] = prev
        return conf


def select_version(conf: dict[str, Any], where: str) -> str:
    """The highest version of cniVersion and cniVersions that gingham speaks."""
    asked = [conf.get("cniVersion", "")] + list(conf.get("cniVersions") or [])
    ok = [v for v in asked if isinstance(v, str) and v in spec.SUPPORTED_VERSIONS]
    if not ok:
        raise CNIError(spec.ERR_INCOMPATIBLE_VERSION, f"{where}: no supported cniVersion",
                       f"config asks for {[v for v in asked if v]}, gingham supports {list(spec.SUPPORTED_VERSIONS)}")
    return max(ok, key=spec.version_key)


class Runtime:
    def __init__(self, cni_path: str = DEFAULT_CNI_PATH, cache_dir: str = DEFAULT_CACHE_DIR,
                 extra_env: dict[str, str] | None = None) -> None:
        self.cni_path = cni_path
        self.cache_dir = cache_dir
        self.extra_env = extra_env or {}

    # -- exec ------------------------------------------------------------------------
    def _env(self, command: str, att: Attachment | None) -> dict[str, str]:
        env = {"CNI_COMMAND": command, "CNI_PATH": self.cni_path,
               "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **self.extra_env}
        if att is not None:
            env.update({"CNI_CONTAINERID": att.container_id, "CNI_NETNS": att.netns,
                        "CNI_IFNAME": att.ifname, "CNI_ARGS": att.cni_args()})
        return env

    def _run(self, plugin: dict[str, Any], command: str, att: Attachment | None,
             conf: dict[str, Any]) -> bytes:
        path = invoke.find(plugin["type"], self.cni_path)
        return invoke.exec_plugin(path, self._env(command, att), json.dumps(conf).encode())

    # -- cache (libcni's layout) --------------------------------------------------------
    def cache_path(self, net: Network, att: Attachment) -> str:
        return os.path.join(self.cache_dir, "results", f"{net.name}-{att.container_id}-{att.ifname}")

    def _write_cache(self, net: Network, att: Attachment, result: dict[str, Any]) -> None:
        d = os.path.join(self.cache_dir, "results")
        os.makedirs(d, mode=0o700, exist_ok=True)
        entry = {"kind": "cniCacheV1", "containerId": att.container_id,
                 "config": base64.b64encode(net.raw).decode(), "ifName": att.ifname,
                 "networkName": net.name, "netns": att.netns,
                 "cniArgs": [list(p) for p in att.args] or None, "capabilityArgs": att.cap_args or None,
                 "result": result}
        path = self.cache_path(net, att)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f)
        os.replace(tmp, path)

    def read_cache(self, net: Network, att: Attachment) -> dict[str, Any] | None:
        try:
            with open(self.cache_path(net, att)) as f:
                entry = json.load(f)
        except (OSError, json.JSONDecodeError):
            return None
        return entry if isinstance(entry, dict) else None

    def cached_attachments(self, net: Network) -> list[dict[str, Any]]:
        d = os.path.join(self.cache_dir, "results")
        out = []
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return []
        for n in names:
            if not n.startswith(net.name + "-") or n.endswith(".tmp"):
                continue
            try:
                with open(os.path.join(d, n)) as f:
                    entry = json.load(f)
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(entry, dict) and entry.get("networkName") == net.name:
                out.append(entry)
        return out

    def _cached_result(self, net: Network, att: Attachment) -> dict[str, Any] | None:
        entry = self.read_cache(net, att)
        if not entry or not entry.get("result"):
            return None
        try:
            return spec.result_to_version(spec.result_to_internal(entry["result"]), net.version)
        except CNIError:
            return None

    # -- verbs -------------------------------------------------------------------------
    def add(self, net: Network, att: Attachment) -> dict[str, Any]:
        """ADD the whole list; on failure, DEL it again (as kubelet would) and raise."""
        prev: dict[str, Any] | None = None
        try:
            for plugin in net.plugins:
                out = self._run(plugin, "ADD", att, net.plugin_conf(plugin, att.cap_args, prev))
                try:
                    prev = json.loads(out)
                except json.JSONDecodeError as e:
                    raise CNIError(spec.ERR_DECODE, f"{plugin['type']} printed no JSON result", str(e)) from e
        except CNIError:
            try:
                self.delete(net, att, use_cache=False)
            except CNIError:
                pass
            raise
        assert prev is not None
        self._write_cache(net, att, prev)
        return prev

    def delete(self, net: Network, att: Attachment, use_cache: bool = True) -> None:
        prev = self._cached_result(net, att) if use_cache and spec.has_prev_result_on_del(net.version) else None
        for plugin in reversed(net.plugins):
            self._run(plugin, "DEL", att, net.plugin_conf(plugin, att.cap_args, prev))
        try:
            os.unlink(self.cache_path(net, att))
        except FileNotFoundError:
            pass

    def check(self, net: Network, att: Attachment) -> None:
        if not spec.has_check(net.version):
            raise CNIError(spec.ERR_INCOMPATIBLE_VERSION, f"CHECK needs cniVersion 0.4.0 or later, not {net.version}")
        if net.disable_check:
            return
        prev = self._cached_result(net, att)
        if prev is None:
            raise CNIError(spec.ERR_UNKNOWN_CONTAINER, "no cached result for this attachment",
                           f"{self.cache_path(net, att)} is missing: was it added with this runtime?")
        for plugin in net.plugins:
            self._run(plugin, "CHECK", att, net.plugin_conf(plugin, att.cap_args, prev))

    def status(self, net: Network) -> None:
        if not spec.has_status(net.version):
            return
        for plugin in net.plugins:
            self._run(plugin, "STATUS", None, net.plugin_conf(plugin, None, None))

    def gc(self, net: Network, valid: list[tuple[str, str]]) -> list[str]:
        """DELs cached attachments not in `valid`, then sends GC; returns what it removed."""
        if net.disable_gc:
            return []
        keep = set(valid)
        removed, errors = [], []
        for entry in self.cached_attachments(net):
            key = (entry.get("containerId", ""), entry.get("ifName", ""))
            if key in keep:
                continue
            att = Attachment(key[0], entry.get("netns", ""), key[1],
                             [(str(p[0]), str(p[1])) for p in entry.get("cniArgs") or []],
                             entry.get("capabilityArgs") or {})
            try:
                self.delete(net, att)
                removed.append(f"{key[0]}/{key[1]}")
            except CNIError as e:
                errors.append(f"DEL {key[0]}/{key[1]}: {e}")
        if spec.has_gc(net.version):
            atts = [{"containerID": c, "ifname": i} for c, i in sorted(keep)]
            for plugin in net.plugins:
                conf = net.plugin_conf(plugin, None, None)
                conf["cni.dev/valid-attachments"] = atts
                conf["cni.dev/attachments"] = atts
                try:
                    self._run(plugin, "GC", None, conf)
                except CNIError as e:
                    errors.append(f"GC {plugin['type']}: {e}")
        if errors:
            raise CNIError(spec.ERR_INTERNAL, "GC finished with errors", "; ".join(errors))
        return removed
