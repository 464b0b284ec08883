"""Reading fields of a Kubernetes object's body, refusing what has the wrong shape by the field's path.

`FieldError(field, msg)` is what the manifest loader turns into "file: document (object):
field: msg"; the parsers of Ingress and Gateway API objects read their bodies with these.
"""

from __future__ import annotations

from typing import Any


class FieldError(ValueError):
    def __init__(self, field: str, msg: str) -> None:
        super().__init__(f"{field}: {msg}")
        self.field, self.msg = field, msg


def obj(v: Any, field: str) -> dict[str, Any]:
    """An object (a missing one is empty)."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise FieldError(field, "must be an object")
    return v


def items(v: Any, field: str, most: int | None = None) -> list[Any]:
    """A list (a missing one is empty), of at most `most` entries."""
    if v is None:
        return []
    if not isinstance(v, list):
        raise FieldError(field, "must be a list")
    if most is not None and len(v) > most:
        raise FieldError(field, f"at most {most} entries")
    return v


def string(v: Any, field: str, required: bool = False) -> str:
    """A string ("" when missing, unless it is required)."""
    if v is None or v == "":
        if required:
            raise FieldError(field, "is required")
        return ""
    if not isinstance(v, str):
        raise FieldError(field, "must be a string")
    return v


def integer(v: Any, field: str, lo: int, hi: int, default: int | None = None) -> int:
    """An integer from lo to hi (a boolean is not one); `default` when missing, if given."""
    if v is None and default is not None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise FieldError(field, f"must be an integer from {lo} to {hi}, got {v!r}")
    return int(v)
