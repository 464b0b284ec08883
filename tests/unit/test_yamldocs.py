"""The fast manifest loader builds exactly what yaml.safe_load_all builds, and refuses what would crash it."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gingham.model import yamldocs

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=12),
                    st.floats(allow_nan=False), st.sampled_from(["yes", "no", "on", "~", "0x1f", "0o17", "1e3",
                                                                 "2024-01-02", "2024-01-02T03:04:05Z", ".inf",
                                                                 "null", "True", "010", "1_000", "", "-"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=3), st.booleans())
def test_same_values_as_pyyaml(docs: list[object], flow: bool) -> None:
    text = yaml.safe_dump_all(docs, default_flow_style=flow, allow_unicode=True)
    assert yamldocs.load_all(text) == list(yaml.safe_load_all(text))


@pytest.mark.parametrize("text", [
    "a: &x {b: 1, c: [1, 2]}\nd: *x\n",                       # an alias shares its value
    "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n",    # a merge key
    "s: !!set {a, b}\nt: !!binary aGVsbG8=\nu: !!str 5\n",    # explicit tags
    "when: 2001-12-14t21:59:43.10-05:00\nport: 080\nf: 1.5\n",
    "---\n---\nkind: A\n...\n---\n[1, 2]\n",                   # empty documents are None
    "k: 'quoted: yes'\nplain: yes\nq: \"5\"\n",
    "? [1, 2]\n: x\n",                                        # a sequence as a key is refused by both
])
def test_documents_as_pyyaml(text: str) -> None:
    try:
        want = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        with pytest.raises(yaml.YAMLError):
            yamldocs.load_all(text)
        return
    assert yamldocs.load_all(text) == want


def test_aliases_are_built_once() -> None:
    # ten levels of ten aliases each: 10^10 leaves if each alias were copied
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    docs = yamldocs.load_all("\n".join(lines) + "\n")
    assert docs[0]["l9"][0] is docs[0]["l8"]


@pytest.mark.parametrize("text", ["a: " + "[" * 5000 + "]" * 5000 + "\n", "a: &a [1, *a]\n"])
def test_too_deep_or_self_referring_is_a_yaml_error(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        yamldocs.load_all(text)
