"""Typed reads of plugin config keys, with errors that name the key and what it wants."""

from __future__ import annotations

import ipaddress

from . import spec
from .spec import CNIError

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Any


def _bad(key: str, want: str, got: Any) -> CNIError:
    return CNIError(spec.ERR_INVALID_CONFIG, f"invalid network config: {key}",
                    f"{key} must be {want}, got {got!r}")


def get_bool(conf: dict[str, Any], key: str, default: bool = False, where: str = "") -> bool:
    v = conf.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise _bad(where + key, "true or false", v)
    return v


def get_int(conf: dict[str, Any], key: str, default: int = 0, lo: int | None = None,
            hi: int | None = None, where: str = "") -> int:
    v = conf.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
        raise _bad(where + key, "an integer", v)
    v = int(v)
    assert isinstance(v, int)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _bad(where + key, f"between {lo} and {hi}", v)
    return v


def get_str(conf: dict[str, Any], key: str, default: str = "", where: str = "") -> str:
    v = conf.get(key, default)
    if v is None:
        return default
    if not isinstance(v, str):
        raise _bad(where + key, "a string", v)
    return v


def get_obj(conf: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    v = conf.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _bad(where + key, "an object", v)
    return v


def get_list(conf: dict[str, Any], key: str, where: str = "") -> list[Any]:
    v = conf.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise _bad(where + key, "a list", v)
    return v


def reject_keys(conf: dict[str, Any], keys: dict[str, str], where: str = "") -> None:
    """Keys the reference accepts that gingham does not implement: code 2, with the reason."""
    for key, why in keys.items():
        if conf.get(key) not in (None, False, [], 0, ""):
            raise CNIError(spec.ERR_UNSUPPORTED_FIELD, f"unsupported field {where}{key}",
                           f"{where}{key}={conf[key]!r}: {why}")


def parse_ip(raw: Any, key: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(raw, str):
        raise _bad(key, "an IP address string", raw)
    try:
        return ipaddress.ip_address(raw.split("/")[0].strip())
    except ValueError as e:
        raise _bad(key, "an IP address", raw) from e


def parse_cidr(raw: Any, key: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(raw, str):
        raise _bad(key, "a CIDR string", raw)
    try:
        return ipaddress.ip_network(raw, strict=False)
    except ValueError as e:
        raise _bad(key, "a CIDR such as 10.0.0.0/8", raw) from e


def load_cni_args(raw: dict[str, str], known: set[str]) -> dict[str, str]:
    """CNI_ARGS with the reference's rule: unknown keys fail unless IgnoreUnknown is set."""
    ignore = raw.get("IgnoreUnknown", "").lower() in ("1", "true")
    unknown = [k for k in raw if k not in known | {"IgnoreUnknown"}]
    if unknown and not ignore:
        raise CNIError(spec.ERR_UNSUPPORTED_FIELD, "unknown CNI_ARGS",
                       f"{', '.join(unknown)} (set IgnoreUnknown=1 to pass them through)")
    return raw
