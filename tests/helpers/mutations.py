"""Random damage to valid documents, for the property tests that throw bad input at gingham:
a value replaced by junk of another type, a key removed or added, a value wrapped in a list."""

from __future__ import annotations

import copy
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import strategies as st

junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=20),
              st.dates(), st.sampled_from(["", "None", "10.0.0.0/8", "::/64", "1-2", "0.0.0.0", "-1", "a" * 300,
                                           "10.96.0.10", "30080", "TCP", "http", "x/y", "*", "node-1"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def mutate(docs: list[Any], data: st.DataObject) -> list[Any]:
    docs = copy.deepcopy(docs)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(docs) - 1))
        path = data.draw(st.sampled_from(list(paths(docs[i]))))
        action = data.draw(st.sampled_from(["replace", "delete", "add", "wrap"]))
        if not path:
            docs[i] = data.draw(junk) if action == "replace" else [docs[i]] if action == "wrap" else docs[i]
            continue
        parent = docs[i]
        for p in path[:-1]:
            parent = parent[p]
        last = path[-1]
        if action == "replace":
            parent[last] = data.draw(junk)
        elif action == "delete":
            del parent[last]
        elif action == "wrap":
            parent[last] = [parent[last]]
        elif isinstance(parent[last], dict):
            parent[last][data.draw(st.text(max_size=10))] = data.draw(junk)
    return docs


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def hung(*_: Any) -> None:
        raise TimeoutError(f"still working after {seconds} s")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
