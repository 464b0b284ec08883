"""`@record`: value classes for the CNI plugin path, without importing `dataclasses`.

A plugin is a process per call, and every import is paid again each time: `dataclasses`
(with the `inspect`, `ast` and `dis` it loads) took 10 ms of a ~90 ms ADD. A record is
what those classes used of a dataclass: an `__init__` taking the annotated fields in
order (class attributes are defaults; `factory(default_factory=f)` for a fresh mutable default, spelt so that type checkers see it),
`__eq__`, `__repr__`, and for `frozen=True` immutability and `__hash__`. Type checkers
see it as a dataclass (PEP 681's dataclass_transform).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar, dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_: object) -> object:
        return lambda f: f


class _Factory:
    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def factory(default_factory: Callable[[], T]) -> T:
    """A default made anew for each instance (dataclasses' `field(default_factory=...)`)."""
    return _Factory(default_factory)  # type: ignore[return-value]  # a marker, replaced by __init__


def _fields(cls: type) -> list[str]:
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        for name in klass.__dict__.get("__annotations__", {}):
            if name not in names:
                names.append(name)
    return names


@dataclass_transform(field_specifiers=(factory,))
def record(cls: type[T] | None = None, *, frozen: bool = False) -> Any:
    def build(cls: type[T]) -> type[T]:
        names = _fields(cls)
        defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
        for n in defaults:
            delattr(cls, n)

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if len(args) > len(names):
                raise TypeError(f"{cls.__name__}() takes {len(names)} arguments, got {len(args)}")
            values = dict(zip(names, args))
            for k, v in kwargs.items():
                if k not in names or k in values:
                    raise TypeError(f"{cls.__name__}() got an unexpected or repeated argument {k!r}")
                values[k] = v
            for n in names:
                if n not in values:
                    if n not in defaults:
                        raise TypeError(f"{cls.__name__}() missing argument {n!r}")
                    d = defaults[n]
                    values[n] = d.make() if isinstance(d, _Factory) else d
                object.__setattr__(self, n, values[n])

        def __eq__(self: Any, other: object) -> bool:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in names)

        def __repr__(self: Any) -> str:
            return f"{cls.__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"

        setattr(cls, "__init__", __init__)
        setattr(cls, "__eq__", __eq__)
        setattr(cls, "__repr__", __repr__)
        if frozen:
            def __setattr__(self: Any, name: str, value: Any) -> None:
                raise AttributeError(f"{cls.__name__} is frozen: cannot set {name}")

            def __hash__(self: Any) -> int:
                return hash(tuple(getattr(self, n) for n in names))

            setattr(cls, "__setattr__", __setattr__)
            setattr(cls, "__hash__", __hash__)
        else:
            setattr(cls, "__hash__", None)
        return cls

    return build if cls is None else build(cls)
