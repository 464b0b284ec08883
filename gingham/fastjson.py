"""`loads` and `dumps` as the json module's defaults give them, over the `_json` C module alone.

Importing `json` loads `re` (and with it `enum`, `functools`, `collections`) for two
patterns its pure-Python fallback needs: 12 ms of every CNI plugin process, about a tenth
of an ADD. The C scanner and encoder that `json` itself uses do the work here; the
output is byte for byte `json.dumps(obj)` (ensure_ascii, ", " and ": "), and the input
rules are `json.loads`'s for text (NaN and Infinity accepted, trailing data refused).
Errors are ValueErrors (the scanner's own are json.JSONDecodeError, imported on error).
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_WHITESPACE = " \t\n\r"


class JSONDecodeError(ValueError):
    def __init__(self, msg: str, doc: str, pos: int) -> None:
        super().__init__(f"{msg}: char {pos}")
        self.msg, self.doc, self.pos = msg, doc, pos


class _Context:
    """What the C scanner reads from a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # typeshed wants a JSONDecoder; it reads these


def _skip(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _WHITESPACE:
        i += 1
    return i


def loads(data: str | bytes | bytearray) -> Any:
    s = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    start = _skip(s, 0)
    try:
        obj, end = _scan(s, start)
    except StopIteration as e:
        raise JSONDecodeError("Expecting value", s, int(e.value)) from None
    end = _skip(s, end)
    if end != len(s):
        raise JSONDecodeError("Extra data", s, end)
    return obj


def _unencodable(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


_COMPACT = _json.make_encoder(None, _unencodable, _json.encode_basestring_ascii, None, ":", ",", False, False, True)


def compact(obj: Any) -> str:
    """`json.dumps(obj, separators=(",", ":"))`, with one encoder made once and no check for
    circular references (the flow records are trees): a third of what json.dumps costs."""
    return "".join(_COMPACT(obj, 0))


def dumps(obj: Any) -> str:
    encode = _json.make_encoder({}, _unencodable, _json.encode_basestring_ascii, None, ": ", ", ",
                                False, False, True)
    return "".join(encode(obj, 0))
