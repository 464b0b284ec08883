"""YAML documents to plain values, as yaml.safe_load_all builds them, in a third of the time.

libyaml (PyYAML's C loader) parses and composes the node tree; PyYAML's constructor then
builds the values in Python through a generic machine (state generators, per-node
bookkeeping) that takes most of the time: 4 s of the 5.5 s a 30,000-Service manifest took.
Here the common nodes (strings, plain mappings and sequences) are built by one small
recursive function, and everything else (ints, bools, nulls, floats, timestamps, binary,
sets, merge keys, any explicit tag) is handed to PyYAML's own safe constructor, so the
values are the same as `yaml.safe_load_all`'s (a property test checks it). An alias is
built once and shared, as PyYAML does, so alias bombs stay cheap; an alias inside itself
and nesting beyond `MAX_DEPTH` are refused with a YAMLError instead of a RecursionError.
"""

from __future__ import annotations

from typing import IO, Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

STR, MAP, SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
MERGE = "tag:yaml.org,2002:merge"
MAX_DEPTH = 200  # Kubernetes objects nest a dozen levels; a document nested deeper is refused
_PLAIN: dict[str, str] = {}  # a plain scalar's resolved tag, by its text (manifests repeat most of them)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader, with the tag of a plain scalar remembered: resolving runs one regular
    expression after another per scalar, and libyaml calls it for each."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit[0] and not self.yaml_path_resolvers:
            tag = _PLAIN.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if len(_PLAIN) < 100_000 and len(value) < 100:
                    _PLAIN[value] = tag
            return tag
        return str(super().resolve(kind, value, implicit))


class _Builder:
    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.done: dict[int, Any] = {}      # id(node) -> its value (aliases share it)
        self.building: set[int] = set()

    def value(self, node: Node, depth: int = 0) -> Any:
        if type(node) is ScalarNode:
            if node.tag == STR:
                return node.value
            return self.loader.construct_object(node, deep=True)
        key = id(node)
        if key in self.done:
            return self.done[key]
        if key in self.building:
            raise yaml.constructor.ConstructorError(None, None, "an alias refers to a node that contains it",
                                                    node.start_mark)
        if depth > MAX_DEPTH:
            raise yaml.constructor.ConstructorError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                    node.start_mark)
        self.building.add(key)
        try:
            out = self._collection(node, depth)
        finally:
            self.building.discard(key)
        self.done[key] = out
        return out

    def _collection(self, node: Node, depth: int) -> Any:
        if type(node) is SequenceNode and node.tag == SEQ:
            return [self.value(v, depth + 1) for v in node.value]
        if type(node) is MappingNode and node.tag == MAP and not any(k.tag == MERGE for k, _ in node.value):
            out: dict[Any, Any] = {}
            for k, v in node.value:
                kv = self.value(k, depth + 1)
                try:
                    out[kv] = self.value(v, depth + 1)
                except TypeError:
                    raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                            "found unhashable key", k.start_mark) from None
            return out
        # anything else (an explicit tag, a merge key): PyYAML's constructor, on this subtree
        self._check(node, depth)
        return self.loader.construct_object(node, deep=True)

    def _check(self, node: Node, depth: int) -> None:
        """The nesting and self-reference checks, on a subtree PyYAML will build."""
        stack = [(node, depth)]
        seen: set[int] = set()
        while stack:
            n, d = stack.pop()
            if d > MAX_DEPTH:
                raise yaml.constructor.ConstructorError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                        n.start_mark)
            if id(n) in seen or type(n) is ScalarNode:
                continue
            seen.add(id(n))
            children = n.value if type(n) is SequenceNode else [c for kv in n.value for c in kv]
            stack += [(c, d + 1) for c in children]


def load_all(stream: str | bytes | IO[str]) -> list[Any]:
    """Every document of `stream` as plain values (None for an empty one); raises yaml.YAMLError."""
    loader = _Loader(stream)
    try:
        docs = []
        while loader.check_node():
            node = loader.get_node()
            docs.append(None if node is None else _Builder(loader).value(node))
            loader.constructed_objects, loader.recursive_objects = {}, {}
        return docs
    finally:
        loader.dispose()
