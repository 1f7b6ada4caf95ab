"""③ Which rules of one event type can possibly match an event, without testing each: an anchor index.

A rule's anchor is a condition every match needs: in each alternative of its pattern, one field whose
values/operators are all exact values or (case-sensitive) prefixes. The index keeps, per field path, a
dict from exact value to rules and a dict from prefix to rules; an event's leaf values at that path
(through arrays at any level) look them up. Rules without an anchor (only numeric ranges, anything-but,
exists, ... or no pattern at all) are candidates for every event. Candidates come back in load order and
still have to pass the full test (`rules.match.match`): the index only ever removes rules that cannot match.

Exact keys keep the pattern's equality: a boolean never equals a number, a string never equals a number,
and numbers compare by value (1 and 1.0 are one key, as `pattern_ops.equal` has it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import Rule
from .pattern import Leaf, leaves_at
from .pattern_ops import Exact, Prefix

__all__ = ["AnchorIndex", "anchors_of", "exact_key"]


@dataclass(frozen=True)
class Anchor:
    """A necessary condition of one alternative: the field at `path` holds one of `exact` or starts with a
    `prefixes` entry."""

    path: tuple[str, ...]
    exact: tuple[tuple[str, Any], ...]
    prefixes: tuple[str, ...]


def exact_key(value: Any) -> tuple[str, Any] | None:
    """The dict key of a leaf value under exact equality; None for values no exact condition equals."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, int | float):
        return ("num", value)  # 1 == 1.0 and hash(1) == hash(1.0)
    return None


def _anchor(leaf: Leaf) -> Anchor | None:
    exact, prefixes = [], []
    for matcher in leaf.matchers:
        if isinstance(matcher, Exact):
            exact.append(exact_key(matcher.value))
        elif isinstance(matcher, Prefix) and not matcher.ignore_case:
            prefixes.append(matcher.text)
        else:
            return None
    return Anchor(leaf.path, tuple(k for k in exact if k is not None), tuple(prefixes))


def anchors_of(rule: Rule) -> list[Anchor] | None:
    """One anchor per alternative of the rule's pattern (exact ones preferred), or None if one has none."""
    found: list[Anchor] = []
    for branch in rule.pattern.branches:
        anchors = [a for a in map(_anchor, branch.leaves) if a is not None]
        if not anchors:
            return None
        anchors.sort(key=lambda a: (bool(a.prefixes), len(a.exact) + len(a.prefixes)))
        found.append(anchors[0])
    return found or None


class _PathIndex:
    """The anchors on one field path: exact values and prefixes to rule positions."""

    def __init__(self) -> None:
        self.exact: dict[tuple[str, Any], list[int]] = {}
        self.prefixes: dict[str, list[int]] = {}
        self.lengths: tuple[int, ...] = ()

    def add(self, anchor: Anchor, position: int) -> None:
        for key in anchor.exact:
            self.exact.setdefault(key, []).append(position)
        for prefix in anchor.prefixes:
            self.prefixes.setdefault(prefix, []).append(position)
        self.lengths = tuple(sorted({len(p) for p in self.prefixes}))

    def lookup(self, values: list[Any], out: set[int]) -> None:
        exact, prefixes, lengths = self.exact, self.prefixes, self.lengths
        for value in values:
            key = exact_key(value)
            if key is not None and key in exact:
                out.update(exact[key])
            if lengths and isinstance(value, str):
                for length in lengths:
                    if length > len(value):
                        break
                    hit = prefixes.get(value[:length])
                    if hit is not None:
                        out.update(hit)


class AnchorIndex:
    """Rules (of one event type, in load order) indexed by their anchors; `candidates` keeps load order."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = [rule for rule in rules if rule.enabled]  # a disabled rule never matches fully
        self._paths: dict[tuple[str, ...], _PathIndex] = {}
        self._loose: list[int] = []
        for position, rule in enumerate(self.rules):
            anchors = anchors_of(rule)
            if anchors is None:
                self._loose.append(position)
                continue
            for anchor in anchors:
                self._paths.setdefault(anchor.path, _PathIndex()).add(anchor, position)

    @property
    def unanchored(self) -> int:
        """How many rules every event must be tested against."""
        return len(self._loose)

    def candidates(self, view: Mapping[str, Any]) -> list[Rule]:
        """The rules that may match the event `view`, in load order (a superset of those that do)."""
        found: set[int] = set(self._loose)
        for path, index in self._paths.items():
            values = leaves_at(view, path)
            if values:
                index.lookup(values, found)
        rules = self.rules
        return [rules[i] for i in sorted(found)]
