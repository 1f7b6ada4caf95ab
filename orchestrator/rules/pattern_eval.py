"""③ Evaluating a compiled pattern against an event: the tree of an alternative, and the first failure.

An alternative of a pattern (a Branch: its leaves, and the same leaves as a tree of objects) is checked
leaf by leaf while no array is on the way; when one is, the tree is walked so that the fields of one
pattern object hold within one element of the array (event-ruler's array consistency). A field that holds by
its absence (`exists: false`) chooses no element: it is absent from the element the other fields' values
chose, or, when none chose one, from every element (event-ruler's NameState.getNameTransitions: absent means
no field of that name consistent with the elements chosen so far). See pattern.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .pattern_ops import Exists, Matcher

__all__ = ["ABSENT", "Branch", "Failure", "Leaf", "Node", "leaves_at"]

ABSENT: Any = object()
_SCALARS = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True)
class Failure:
    """The first predicate of a pattern that did not hold (its `reason` is only written when asked for)."""

    path: str
    seen: Any  # the event's value there (None when missing: see `missing`)
    expected: Any  # the pattern's value(s) there, as written
    missing: bool
    leaf: Leaf = field(repr=False, compare=False)
    of_alternatives: bool = False  # every alternative of a $or failed; this is the first one's failure

    @property
    def reason(self) -> str:
        expected = self.leaf.describe()
        if self.missing:
            text = f"{self.path} is missing (expected {expected})"
        elif not _leaves(self.seen):
            kind = "an object" if isinstance(self.seen, dict) else "an empty list"
            text = f"{self.path} is {kind}, not a value (expected {expected})"
        else:
            text = f"{self.path} is {self.seen!r} (expected {expected})"
        return f"no alternative of $or holds; the first: {text}" if self.of_alternatives else text


@dataclass(frozen=True)
class Leaf:
    """A field path and the values/operators it accepts (any of them)."""

    path: tuple[str, ...]
    matchers: tuple[Matcher, ...]
    written: Any = field(compare=False)
    name: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", ".".join(self.path))

    def describe(self) -> str:
        if len(self.matchers) == 1:
            return self.matchers[0].describe()
        return "one of " + ", ".join(m.describe() for m in self.matchers)

    def check(self, value: Any) -> Failure | None:
        if type(value) in _SCALARS:  # the common case: one leaf value (Exists.test says present)
            for matcher in self.matchers:
                if matcher.test(value):
                    return None
            return Failure(self.name, value, self.written, False, self)
        leaves = _leaves(value)
        for matcher in self.matchers:
            if isinstance(matcher, Exists):
                if bool(leaves) == matcher.present:
                    return None
            elif any(matcher.test(v) for v in leaves):
                return None
        if value is ABSENT:
            return Failure(self.name, None, self.written, True, self)
        return Failure(self.name, value, self.written, False, self)


@dataclass(frozen=True)
class Node:
    """A pattern object: each key is a field of the event value here, holding a Leaf or a nested object.
    A key of digits also picks that position of an array (data.lines.0.sku, as orch allowed before patterns)."""

    fields: tuple[tuple[str, Leaf | Node], ...]

    def check(self, value: Any) -> Failure | None:
        return self._check(value)[0]

    def _check(self, value: Any) -> tuple[Failure | None, bool]:
        """The first failure (None: the object holds), and whether a field held by a value rather than by its
        absence (`exists: false`): only a value chooses an element of an array on the way."""
        if not isinstance(value, list):
            return _fields(self.fields, value)
        fields, chose = self.fields, False
        if any(key.isdigit() for key, _ in fields):
            picked = tuple((key, child) for key, child in fields if key.isdigit())
            failure, chose = _fields(picked, dict(enumerate(value)), positions=True)
            if failure is not None:
                return failure, False
            fields = tuple((key, child) for key, child in fields if not key.isdigit())
        elements = list(_elements(value))
        if not elements:
            failure, by_value = _fields(fields, ABSENT)
            return failure, chose or by_value
        first: Failure | None = None
        for element in elements:  # array consistency: the whole object holds within one element ...
            failure, by_value = _fields(fields, element)
            if failure is None and by_value:
                return None, True
            first = first or failure
        for element in elements:  # ... chosen by a value; else every field is absent from every element
            failure, _ = _fields(fields, element)
            if failure is not None:
                return first or failure, False
        return None, chose


def _fields(fields: tuple[tuple[str, Leaf | Node], ...], value: Any, positions: bool = False) -> tuple[Failure | None, bool]:
    """Whether every field holds in `value` (an object; anything else has no fields), as Node._check says."""
    by_value = False
    for key, child in fields:
        sub = value.get(int(key) if positions else key, ABSENT) if isinstance(value, dict) else ABSENT
        if isinstance(child, Leaf):
            failure = child.check(sub)
            held = failure is None and (type(sub) in _SCALARS or bool(_leaves(sub)))
        else:
            failure, held = child._check(sub)
        if failure is not None:
            return failure, False
        by_value = by_value or held
    return None, by_value


@dataclass(frozen=True)
class Branch:
    """One alternative of a pattern ($or expanded): every leaf must hold, consistently within arrays."""

    leaves: tuple[Leaf, ...]
    root: Node = field(compare=False)

    def check(self, view: Any) -> Failure | None:
        """Leaf by leaf while no array is on the way (each has one value then); the consistent walk otherwise."""
        for leaf in self.leaves:
            value = view
            for part in leaf.path:
                if type(value) is dict:
                    value = value.get(part, ABSENT)
                elif type(value) is list:
                    return self.root.check(view)
                else:
                    value = ABSENT
                    break
            failure = leaf.check(value)
            if failure is not None:
                return failure
        return None


# -- reading the event ----------------------------------------------------------------------------------------


def _elements(value: list[Any]) -> Iterator[Any]:
    """The elements of a (possibly nested) array, nested arrays flattened."""
    for item in value:
        if isinstance(item, list):
            yield from _elements(item)
        else:
            yield item


def _leaves(value: Any) -> list[Any]:
    """The leaf values (strings, numbers, booleans, null) at a field: none when it is missing or an object."""
    if value is ABSENT or isinstance(value, dict):
        return []
    if isinstance(value, list):
        return [v for v in _elements(value) if not isinstance(v, dict)]
    return [value]


def leaves_at(view: Any, path: tuple[str, ...]) -> list[Any]:
    """Every leaf value reachable along `path`, through arrays at any level (what the index looks up)."""
    value = view
    for part in path:  # the common case: objects all the way
        if type(value) is not dict:
            break
        value = value.get(part, ABSENT)
    else:
        return [value] if type(value) in _SCALARS else _leaves(value)
    values = [view]
    for part in path:
        nxt = []
        for value in values:
            if isinstance(value, list) and part.isdigit() and int(part) < len(value):
                nxt.append(value[int(part)])  # a position (data.lines.0.sku)
            for item in (_elements(value) if isinstance(value, list) else (value,)):
                if isinstance(item, dict) and part in item:
                    nxt.append(item[part])
        if not nxt:
            return []
        values = nxt
    out: list[Any] = []
    for value in values:
        out.extend(_leaves(value))
    return out
