"""CNI spec facts: versions, error codes, and result conversion between versions.

Results are held internally in the 1.1.0 shape (a dict, as it goes on the wire) and
converted on the way out, the way libcni's `convert` does: 0.3.x/0.4.0 carry
`ips[].version`, 1.0.0 dropped it, and 1.1.0 added interface and route fields.
"""

from __future__ import annotations

import ipaddress

from .. import fastjson as json  # json's defaults without importing re (a plugin process pays for it)

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

# Error codes, from the spec's table plus the two the Go library defines.
ERR_INCOMPATIBLE_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_DECODE = 6
ERR_INVALID_CONFIG = 7
ERR_INVALID_NETNS = 8
ERR_TRY_AGAIN = 11
ERR_NOT_AVAILABLE = 50
ERR_LIMITED_CONNECTIVITY = 51
ERR_INTERNAL = 999

# Fields that appeared in 1.1.0; dropped when a result goes to an older version.
_IFACE_FIELDS_11 = ("mtu", "socketPath", "pciID")
_ROUTE_FIELDS_11 = ("mtu", "advmss", "priority", "table", "scope")


class CNIError(Exception):
    """A failure that goes back to the runtime as a CNI error object."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str = "1.1.0") -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CNIError":
        return cls(int(d.get("code", ERR_INTERNAL)), str(d.get("msg", "")), str(d.get("details", "")))

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg


def version_key(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError as e:
        raise CNIError(ERR_INCOMPATIBLE_VERSION, f"invalid CNI version {v!r}") from e


def has_check(v: str) -> bool:
    return version_key(v) >= (0, 4, 0)


def has_prev_result_on_del(v: str) -> bool:
    return version_key(v) >= (0, 4, 0)


def has_status(v: str) -> bool:
    return version_key(v) >= (1, 1, 0)


has_gc = has_status


def require_supported(v: str, supported: tuple[str, ...] = SUPPORTED_VERSIONS) -> None:
    if v not in supported:
        raise CNIError(
            ERR_INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f"config is {v!r}, plugin supports {list(supported)}",
        )


def _family(address: str) -> str:
    return "4" if ipaddress.ip_interface(address).version == 4 else "6"


def result_to_internal(result: dict[str, Any]) -> dict[str, Any]:
    """Parses a result of any supported version into the 1.1.0 shape."""
    v = str(result.get("cniVersion", ""))
    if v and version_key(v) < (0, 3, 0):
        raise CNIError(ERR_INCOMPATIBLE_VERSION, f"cannot read a result of CNI version {v}",
                       "gingham reads results of 0.3.0 and later")
    out: dict[str, Any] = json.loads(json.dumps(result))
    _check_result(out)
    for ip in out.get("ips", []) or []:
        ip.pop("version", None)
    out["cniVersion"] = "1.1.0"
    return out


def _check_result(r: dict[str, Any]) -> None:
    """A result's shape, as the spec defines it (a prevResult is input: checked like a config)."""
    def bad(where: str, want: str, got: Any) -> CNIError:
        return CNIError(ERR_DECODE, "invalid prevResult", f"{where} must be {want}, got {got!r}")

    def items(key: str) -> list[Any]:
        v = r.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise bad(key, "a list", v)
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                raise bad(f"{key}[{i}]", "an object", item)
        return v

    def text(d: dict[str, Any], key: str, where: str, required: bool = False) -> None:
        if (key in d or required) and not isinstance(d.get(key), str):
            raise bad(f"{where}.{key}", "a string", d.get(key))

    def address(d: dict[str, Any], key: str, where: str, cidr: bool, required: bool = False) -> None:
        text(d, key, where, required)
        if key in d:
            try:
                if cidr and "/" not in d[key]:
                    raise ValueError(d[key])
                (ipaddress.ip_interface if cidr else ipaddress.ip_address)(d[key])
            except ValueError:
                raise bad(f"{where}.{key}", "an address" + (" with a prefix length" if cidr else ""), d[key]) \
                    from None

    ifaces = items("interfaces")
    for i, iface in enumerate(ifaces):
        text(iface, "name", f"interfaces[{i}]", required=True)
        for key in ("mac", "sandbox"):
            text(iface, key, f"interfaces[{i}]")
    for i, ip in enumerate(items("ips")):
        address(ip, "address", f"ips[{i}]", cidr=True, required=True)
        address(ip, "gateway", f"ips[{i}]", cidr=False)
        if "interface" in ip:
            n = ip["interface"]
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < len(ifaces):
                raise bad(f"ips[{i}].interface", f"an index into interfaces (0-{len(ifaces) - 1})", n)
    for i, route in enumerate(items("routes")):
        address(route, "dst", f"routes[{i}]", cidr=True, required=True)
        address(route, "gw", f"routes[{i}]", cidr=False)
    if r.get("dns") is not None and not isinstance(r["dns"], dict):
        raise bad("dns", "an object", r["dns"])


def result_to_version(result: dict[str, Any], v: str) -> dict[str, Any]:
    """Renders an internal (1.1.0-shaped) result for config version `v`."""
    require_supported(v)
    out: dict[str, Any] = {"cniVersion": v}
    old = version_key(v) < (1, 1, 0)
    ifaces = []
    for iface in result.get("interfaces", []) or []:
        i = dict(iface)
        if old:
            for f in _IFACE_FIELDS_11:
                i.pop(f, None)
        ifaces.append(i)
    if ifaces:
        out["interfaces"] = ifaces
    ips = []
    for ip in result.get("ips", []) or []:
        i = dict(ip)
        if version_key(v) < (1, 0, 0):
            i = {"version": _family(i["address"]), **i}
        ips.append(i)
    if ips:
        out["ips"] = ips
    routes = []
    for route in result.get("routes", []) or []:
        r = {k: val for k, val in route.items() if val not in (None, 0, "")}
        if old:
            for f in _ROUTE_FIELDS_11:
                r.pop(f, None)
        routes.append(r)
    if routes:
        out["routes"] = routes
    dns = {k: val for k, val in (result.get("dns") or {}).items() if val}
    out["dns"] = dns
    return out
