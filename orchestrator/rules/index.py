"""③ Which rules of one event type can possibly match an event, without testing each: an anchor index.

An anchor is a condition every match of one alternative of a pattern needs: a field whose values/operators
are all exact values or (case-sensitive) prefixes and suffixes. Each alternative registers up to MAX_ANCHORS of them; the
index keeps, per field path, a dict from exact value to alternatives and ones from prefix and suffix to alternatives,
and an event's leaf values at that path (through arrays at any level) look them up. An alternative whose
anchors are all hit makes its rule a candidate. Rules with an alternative without anchors (only numeric
ranges, anything-but, exists, ... or no pattern at all) are candidates for every event. Candidates come
back in load order and still have to pass the full test (`rules.match.match`): the index only ever removes
rules that cannot match.

Exact keys keep the pattern's equality: a boolean never equals a number, a string never equals a number,
and numbers within -5e9 .. 5e9 compare as event-ruler does, to 6 decimal places (their `comparable` key),
others by value (1e10 and 1e10 + 0.0 are one key), as `pattern_ops.equal` has it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import Rule
from .pattern import Leaf, leaves_at
from .pattern_ops import Exact, Prefix, Suffix, comparable

__all__ = ["AnchorIndex", "anchors_of", "exact_key"]

MAX_ANCHORS = 3  # per alternative: enough to make a candidate rare, few enough to keep lookups cheap


@dataclass(frozen=True)
class Anchor:
    """A necessary condition of one alternative: the field at `path` holds one of `exact`, or starts with a
    `prefixes` entry, or ends with a `suffixes` entry."""

    path: tuple[str, ...]
    exact: tuple[tuple[str, Any], ...]
    prefixes: tuple[str, ...]
    suffixes: tuple[str, ...] = ()


def exact_key(value: Any) -> tuple[str, Any] | None:
    """The dict key of a leaf value under exact equality; None for values no exact condition equals."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, int | float):
        key = comparable(value)  # equal numbers (pattern_ops.equal: to 6 decimals within +-5e9) share a key
        return ("num", key) if key is not None else ("big", value)  # by value beyond: 1 == 1.0, hash(1) == hash(1.0)
    return None


def _anchor(leaf: Leaf) -> Anchor | None:
    exact, prefixes, suffixes = [], [], []
    for matcher in leaf.matchers:
        if isinstance(matcher, Exact):
            exact.append(exact_key(matcher.value))
        elif isinstance(matcher, Prefix) and not matcher.ignore_case:
            prefixes.append(matcher.text)
        elif isinstance(matcher, Suffix) and not matcher.ignore_case:
            suffixes.append(matcher.text)
        else:
            return None
    return Anchor(leaf.path, tuple(k for k in exact if k is not None), tuple(prefixes), tuple(suffixes))


def anchors_of(rule: Rule) -> list[list[Anchor]] | None:
    """The anchors of each alternative of the rule's pattern (exact ones first), or None if one has none."""
    found: list[list[Anchor]] = []
    for branch in rule.pattern.branches:
        anchors = [a for a in map(_anchor, branch.leaves) if a is not None]
        if not anchors:
            return None
        anchors.sort(key=lambda a: (bool(a.prefixes or a.suffixes), len(a.exact) + len(a.prefixes) + len(a.suffixes)))
        found.append(anchors[:MAX_ANCHORS])
    return found or None


class _Affixes:
    """Strings to slot masks, found by the prefixes (or suffixes) of a value: one dict lookup per distinct length."""

    def __init__(self, at_end: bool) -> None:
        self.at_end = at_end
        self.masks: dict[str, int] = {}
        self.lengths: tuple[int, ...] = ()

    def add(self, text: str, slot: int) -> None:
        self.masks[text] = self.masks.get(text, 0) | 1 << slot
        self.lengths = tuple(sorted({len(t) for t in self.masks}))

    def lookup(self, value: str) -> int:
        masks, hit = self.masks, 0
        for length in self.lengths:
            if length > len(value):
                break
            hit |= masks.get(value[len(value) - length:] if self.at_end else value[:length], 0)
        return hit


class _PathIndex:
    """The anchors on one field path: exact values, prefixes and suffixes to masks of alternatives (slots)."""

    def __init__(self) -> None:
        self.exact: dict[tuple[str, Any], int] = {}
        self.prefixes = _Affixes(at_end=False)
        self.suffixes = _Affixes(at_end=True)
        self.covered = 0  # the slots with an anchor on this path

    def add(self, anchor: Anchor, slot: int) -> None:
        self.covered |= 1 << slot
        for key in anchor.exact:
            self.exact[key] = self.exact.get(key, 0) | 1 << slot
        for prefix in anchor.prefixes:
            self.prefixes.add(prefix, slot)
        for suffix in anchor.suffixes:
            self.suffixes.add(suffix, slot)

    def lookup(self, values: list[Any]) -> int:
        """The slots whose anchor on this path one of `values` satisfies."""
        exact, prefixes, suffixes, hit = self.exact, self.prefixes, self.suffixes, 0
        for value in values:
            key = exact_key(value)
            if key is not None:
                hit |= exact.get(key, 0)
            if type(value) is str:
                if prefixes.lengths:
                    hit |= prefixes.lookup(value)
                if suffixes.lengths:
                    hit |= suffixes.lookup(value)
        return hit


class AnchorIndex:
    """Rules (of one event type, in load order) indexed by their anchors; `candidates` keeps load order.

    Each alternative of each rule is a slot, numbered in load order (a rule without anchors has one slot
    with none); sets of slots are bit masks. A slot survives a path unless it has an anchor there that the
    event's values there do not satisfy."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.listening = list(rules)  # every rule of the type, disabled ones too: what `RuleIndex.explain` picks from
        self.position = {id(rule): position for position, rule in enumerate(self.listening)}  # load order
        self.rules = [rule for rule in rules if rule.enabled]  # a disabled rule never matches fully
        paths: dict[tuple[str, ...], _PathIndex] = {}
        self._slot_rule: list[int] = []  # a slot's rule position
        self.unanchored = 0  # how many rules every event is tested against
        for position, rule in enumerate(self.rules):
            alternatives = anchors_of(rule)
            if alternatives is None:
                self.unanchored += 1
                alternatives = [[]]
            for anchors in alternatives:
                slot = len(self._slot_rule)
                self._slot_rule.append(position)
                for anchor in anchors:
                    paths.setdefault(anchor.path, _PathIndex()).add(anchor, slot)
        self._all = (1 << len(self._slot_rule)) - 1
        self._paths = [(path, index, self._all & ~index.covered) for path, index in paths.items()]

    def candidates(self, view: Mapping[str, Any]) -> list[Rule]:
        """The rules that may match the event `view`, in load order (a superset of those that do)."""
        alive = self._all
        for path, index, elsewhere in self._paths:
            values = leaves_at(view, path)
            alive &= (index.lookup(values) if values else 0) | elsewhere
            if not alive:
                return []
        rules, slot_rule, found, last = self.rules, self._slot_rule, [], -1
        while alive:
            low = alive & -alive
            position = slot_rule[low.bit_length() - 1]
            if position != last:
                found.append(rules[position])
                last = position
            alive ^= low
        return found
