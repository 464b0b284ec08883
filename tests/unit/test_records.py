"""gingham/records.py behaves as the dataclasses it replaces on the CNI plugin path."""

from __future__ import annotations

import pytest

from gingham.records import factory, record


@record(frozen=True)
class Point:
    x: int
    y: int = 0


@record
class Bag:
    name: str
    items: dict[str, int] = factory(default_factory=dict)


def test_init_defaults_equality_and_repr() -> None:
    assert Point(1) == Point(1, 0) == Point(x=1, y=0)
    assert Point(1, 2) != Point(2, 1) and Point(1) != (1, 0)
    assert repr(Point(1, 2)) == "Point(x=1, y=2)"
    assert len({Point(1), Point(1, 0), Point(2)}) == 2


def test_frozen_and_fresh_defaults() -> None:
    with pytest.raises(AttributeError):
        Point(1).x = 3  # type: ignore[misc]
    a, b = Bag("a"), Bag("b")
    a.items["k"] = 1
    assert b.items == {} and a.items == {"k": 1}
    a.name = "c"
    assert a.name == "c"
    with pytest.raises(TypeError):
        hash(a)


@pytest.mark.parametrize("args,kwargs", [((), {}), ((1, 2, 3), {}), ((1,), {"x": 2}), ((1,), {"z": 2})])
def test_bad_arguments_are_type_errors(args: tuple[int, ...], kwargs: dict[str, int]) -> None:
    with pytest.raises(TypeError):
        Point(*args, **kwargs)
