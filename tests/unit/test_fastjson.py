"""gingham/fastjson.py reads and writes exactly what the json module's defaults do."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gingham import fastjson

values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(values)
def test_same_text_and_values_as_json(v: object) -> None:
    text = json.dumps(v)
    assert fastjson.dumps(v) == text
    assert fastjson.compact(v) == json.dumps(v, separators=(",", ":"))
    assert fastjson.loads(text) == json.loads(text)
    assert fastjson.loads(text.encode()) == json.loads(text.encode())


def test_constants_whitespace_and_refusals() -> None:
    assert math.isinf(fastjson.loads(" [Infinity, -Infinity] \n")[0])
    assert math.isnan(fastjson.loads("NaN"))
    for bad in ("", "   ", "[1] x", "{'a': 1}", '{"a": }', '"unterminated', b"\xff"):
        with pytest.raises(ValueError):
            fastjson.loads(bad)
    with pytest.raises(TypeError):
        fastjson.dumps({"a": {1, 2}})
