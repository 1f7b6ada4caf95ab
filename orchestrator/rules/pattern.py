"""③ A rule's `match:` pattern: compiled once at load time, evaluated against an event with an explanation.

The pattern language is AWS EventBridge's (and event-ruler's, which EventBridge is built on), written in YAML:

    match:
      data.region: eu                          # exact value; a list means any of: [eu, us]
      data.customer: {tier: [gold]}            # a nested object is the same as the dotted key data.customer.tier
      data.amount: {numeric: [">", 0]}         # one operator (see pattern_ops), or a list mixing values/operators
      data.email: [{suffix: "@example.com"}, {exists: false}]
      $or:                                     # at least two alternatives, each a pattern of its own
        - data.channel: [web]
        - data.priority: {numeric: [">=", 5]}

Every field of the pattern must hold (and); a field holds if any of its values/operators holds (or).

- **Arrays in the event**: a field holds if any element does. For arrays of objects the fields of one
  pattern object must hold within the same element (event-ruler's array consistency): {a: {x: [1], y: [2]}}
  does not match {a: [{x: 1}, {y: 2}]}.
- **Missing fields**: every operator but `exists: false` needs the field present with a leaf value, so
  `anything-but` does not match a missing field; a field holding an object or an empty list has no leaf
  value (it "does not exist", as EventBridge's exists matching says).
- `null` matches JSON null, never a missing field; `anything-but` matches null.

`compile_pattern(match)` -> Pattern, or PatternError locating the problem. `Pattern.evaluate(view)` -> None
when the pattern holds, else the first Failure (path, value seen, value expected as written, reason).
`$or` is expanded into alternatives (its branches) as event-ruler does; at most MAX_BRANCHES.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from ..jsonutil import dumps
from .pattern_ops import OPERATORS, Exact, Exists, Matcher, Parts, PatternError, compile_operator

__all__ = ["MAX_BRANCHES", "Branch", "Failure", "Leaf", "Pattern", "PatternError", "compile_pattern"]

MAX_BRANCHES = 64
_FIELD = re.compile(r"^[^\s.$][^\s.]*$")
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
class _Node:
    """A pattern object: each key is a field of the event value here, holding a Leaf or a nested object.
    A key of digits also picks that position of an array (data.lines.0.sku, as orch allowed before patterns)."""

    fields: tuple[tuple[str, Leaf | _Node], ...]

    def check(self, value: Any) -> Failure | None:
        if not isinstance(value, list):
            return self._fields(self.fields, value)
        fields = self.fields
        if any(key.isdigit() for key, _ in fields):
            for key, child in fields:
                if key.isdigit():
                    failure = child.check(value[int(key)] if int(key) < len(value) else ABSENT)
                    if failure is not None:
                        return failure
            fields = tuple((key, child) for key, child in fields if not key.isdigit())
        first: Failure | None = None
        elements = list(_elements(value))
        for element in elements:  # array consistency: the whole object holds within one element
            failure = self._fields(fields, element)
            if failure is None:
                return None
            first = first or failure
        return first if elements else self._fields(fields, ABSENT)

    @staticmethod
    def _fields(fields: tuple[tuple[str, Leaf | _Node], ...], value: Any) -> Failure | None:
        for key, child in fields:
            sub = value.get(key, ABSENT) if isinstance(value, dict) else ABSENT
            failure = child.check(sub)
            if failure is not None:
                return failure
        return None


@dataclass(frozen=True)
class Branch:
    """One alternative of a pattern ($or expanded): every leaf must hold, consistently within arrays."""

    leaves: tuple[Leaf, ...]
    root: _Node = field(compare=False)

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


@dataclass(frozen=True)
class Pattern:
    """A compiled `match:` pattern; `source` is its canonical JSON (what equality compares)."""

    source: str
    branches: tuple[Branch, ...] = field(compare=False)
    empty: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "empty", all(not branch.leaves for branch in self.branches))

    def holds(self, view: Mapping[str, Any]) -> bool:
        """Whether the pattern holds for `view` (what `evaluate` decides, without the explanation)."""
        branches = self.branches
        if len(branches) == 1:
            return branches[0].check(view) is None
        return any(branch.check(view) is None for branch in branches)

    def evaluate(self, view: Mapping[str, Any]) -> Failure | None:
        """None if the pattern holds for `view` (an event as a dict), else the first failed predicate."""
        if len(self.branches) == 1:
            return self.branches[0].check(view)
        failures = []
        for branch in self.branches:
            failure = branch.check(view)
            if failure is None:
                return None
            failures.append(failure)
        first = failures[0]
        if any(f.path != first.path for f in failures):
            return replace(first, of_alternatives=True)
        return first

    def paths(self) -> list[str]:
        """Every field path the pattern tests, in the order written (each once)."""
        return list(dict.fromkeys(leaf.name for branch in self.branches for leaf in branch.leaves))

    def describe(self) -> str:
        """One line: `data.region == "eu" and data.amount a number > 0`; alternatives in (... or ...)."""
        texts = [" and ".join(_describe_leaf(leaf) for leaf in branch.leaves) for branch in self.branches]
        return texts[0] if len(texts) == 1 else " or ".join(f"({t})" for t in texts)


def compile_pattern(match: Mapping[str, Any]) -> Pattern:
    """Compile a rule's `match:` mapping; PatternError (with its location) if EventBridge would refuse it."""
    if not isinstance(match, Mapping):
        raise PatternError((), "match must be a mapping of field paths to values")
    alternatives = _object(match, (), (), allow_empty=True)
    branches = tuple(_branch(leaves, i) for i, leaves in enumerate(alternatives))
    source = orjson.dumps(match, option=orjson.OPT_SORT_KEYS, default=repr).decode()
    return Pattern(source, branches)


# -- compiling -------------------------------------------------------------------------------------------------

_Alt = list[Leaf]  # one alternative, as leaves in written order


def _object(obj: Mapping[str, Any], prefix: tuple[str, ...], parts: Parts, allow_empty: bool = False) -> list[_Alt]:
    if not obj and not allow_empty:
        raise PatternError(parts, "an empty object matches nothing; remove it or give it fields")
    alternatives: list[_Alt] = [[]]
    for key, value in obj.items():
        where = (*parts, key)
        if key == "$or":
            found = _or(value, prefix, where)
        else:
            found = _field(key, value, prefix, where)
        alternatives = [a + b for a, b in itertools.product(alternatives, found)]
        if len(alternatives) > MAX_BRANCHES:
            raise PatternError(where, f"the $or alternatives multiply to more than {MAX_BRANCHES} combinations")
    return alternatives


def _or(value: Any, prefix: tuple[str, ...], parts: Parts) -> list[_Alt]:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, dict) for v in value):
        raise PatternError(parts, "$or takes a list of at least two patterns (mappings)")
    found: list[_Alt] = []
    for i, item in enumerate(value):
        for key in item:
            if key in OPERATORS:
                raise PatternError((*parts, i, key), f"{key!r} is an operator, not a field: inside $or, put it "
                                                     "under a field, as in - data.x: {" + key + ": ...}")
        found.extend(_object(item, prefix, (*parts, i)))
    return found


def _field(key: Any, value: Any, prefix: tuple[str, ...], parts: Parts) -> list[_Alt]:
    names = key.split(".") if isinstance(key, str) else [""]
    if not all(_FIELD.match(name) for name in names):
        raise PatternError(parts, f"{key!r} is not a field path like data.order.region")
    path = (*prefix, *names)
    if isinstance(value, dict) and not (len(value) == 1 and next(iter(value)) in OPERATORS):
        return _object(value, path, parts)
    return [[Leaf(path, _matchers(value, parts), value)]]


def _matchers(value: Any, parts: Parts) -> tuple[Matcher, ...]:
    if isinstance(value, dict):
        return (compile_operator(value, parts),)
    if not isinstance(value, list):
        return (Exact(_scalar(value, parts)),)
    if not value:
        raise PatternError(parts, "an empty list matches nothing")
    out: list[Matcher] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            out.append(compile_operator(item, (*parts, i)))
        elif isinstance(item, list):
            raise PatternError((*parts, i), "a list inside a list: give the values in one list")
        else:
            out.append(Exact(_scalar(item, (*parts, i))))
    return tuple(out)


def _scalar(value: Any, parts: Parts) -> Any:
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise PatternError(parts, f"compare with a string, number, boolean or null, not {value!r} (quote it)")


def _branch(leaves: _Alt, index: int) -> Branch:
    seen: dict[tuple[str, ...], Leaf] = {}
    for leaf in leaves:
        if leaf.path in seen:
            raise PatternError((leaf.name,), f"{leaf.name} is given twice" + (" (in one $or alternative)" if index
                                                                            else ""))
        for other in seen:
            short, long = sorted((other, leaf.path), key=len)
            if long[:len(short)] == short:
                raise PatternError((leaf.name,), f"{'.'.join(short)} is tested both as a value and as an object")
        seen[leaf.path] = leaf
    return Branch(tuple(leaves), _trie(leaves, 0))


def _trie(leaves: list[Leaf], depth: int) -> _Node:
    groups: dict[str, list[Leaf]] = {}
    for leaf in leaves:
        groups.setdefault(leaf.path[depth], []).append(leaf)
    fields: list[tuple[str, Leaf | _Node]] = []
    for key, group in groups.items():
        fields.append((key, group[0] if len(group[0].path) == depth + 1 else _trie(group, depth + 1)))
    return _Node(tuple(fields))


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


def _describe_leaf(leaf: Leaf) -> str:
    exact = [m for m in leaf.matchers if isinstance(m, Exact)]
    if len(exact) == len(leaf.matchers):
        if len(exact) == 1:
            return f"{leaf.name} == {dumps(exact[0].value).decode()}"
        return f"{leaf.name} in [{', '.join(dumps(m.value).decode() for m in exact)}]"
    return f"{leaf.name}: {leaf.describe()}"
