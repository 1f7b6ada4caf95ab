"""③ Matching events to rules: pure, indexed by event type, and able to say why a rule did not fire."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from ..events.envelope import Event
from .ifexpr import check_if
from .index import AnchorIndex
from .model import MISSING, Match, MatchResult, Rule

__all__ = ["RuleIndex", "event_view", "match"]

_GLOB_CHARS = frozenset("*?[")
MAX_CACHED_TYPES = 4096  # event types are event data: the per-type anchor indexes are bounded
_NO_RULES = AnchorIndex(())


def event_view(event: Event) -> dict[str, Any]:
    """The fields a rule can test and a template can read: CloudEvents attributes, extensions, data."""
    view = event.to_dict()
    view.setdefault("data", None)
    return view


def _type_matches(rule: Rule, event_type: str) -> bool:
    return _types_match(rule.types, event_type)


@functools.lru_cache(maxsize=65536)
def _types_match(types: tuple[str, ...], event_type: str) -> bool:
    return any(fnmatchcase(event_type, pattern) for pattern in types)


def match(rule: Rule, event: Event, view: Mapping[str, Any] | None = None, *, explain: bool = True) -> MatchResult:
    """NONE if the type is not the rule's; PARTIAL with the first failed condition; else FULL.

    With `explain=False` (the fast path) a failed pattern gives PARTIAL without its reason, path and values."""
    if not _type_matches(rule, event.type):
        return MatchResult(rule.name, Match.NONE)
    if not rule.enabled:
        return MatchResult(rule.name, Match.PARTIAL, "the rule is disabled", "disabled")
    if rule.source is not None and not fnmatchcase(event.source, rule.source):
        return MatchResult(rule.name, Match.PARTIAL, f"source {event.source!r} does not match {rule.source!r}",
                           "source")
    if not rule.pattern.empty:
        view = view if view is not None else event_view(event)
        if not explain:
            if not rule.pattern.holds(view):
                return _plain(rule.name, False)
        else:
            failure = rule.pattern.evaluate(view)
            if failure is not None:
                return MatchResult(rule.name, Match.PARTIAL, failure.reason, "match", failure.path,
                                   MISSING if failure.missing else failure.seen, failure.expected)
    if rule.if_expr is not None:  # after the pattern, on both the explained and the fast path
        view = view if view is not None else event_view(event)
        if (reason := check_if(rule.if_expr, view)) is not None:
            return MatchResult(rule.name, Match.PARTIAL, reason, "if") if explain else _plain_if(rule.name)
    return _plain(rule.name, True)


@functools.lru_cache(maxsize=65536)
def _plain(name: str, full: bool) -> MatchResult:
    """A result without explanation (FULL, or a failed pattern on the fast path), made once per rule and outcome."""
    return MatchResult(name, Match.FULL) if full else MatchResult(name, Match.PARTIAL, stopped_by="match")


@functools.lru_cache(maxsize=65536)
def _plain_if(name: str) -> MatchResult:
    """A false or failed `if:` on the fast path, without explanation."""
    return MatchResult(name, Match.PARTIAL, stopped_by="if")


class RuleIndex:
    """Rules indexed by exact event type (glob rules are checked for every event type), and within a type by
    an anchor condition of their patterns (rules/index.py) for `matching`."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        self._order = {id(rule): position for position, rule in enumerate(self.rules)}  # load order
        self._exact: dict[str, list[Rule]] = {}
        self._globs: list[Rule] = []
        self._anchored: dict[str, AnchorIndex] = {}
        for rule in self.rules:
            if any(_GLOB_CHARS & set(t) for t in rule.types):
                self._globs.append(rule)
            else:
                for event_type in dict.fromkeys(rule.types):
                    self._exact.setdefault(event_type, []).append(rule)

    def candidates(self, event_type: str) -> list[Rule]:
        """Rules whose type patterns match `event_type`, in the order they were loaded."""
        found = list(self._exact.get(event_type, ()))
        found += [r for r in self._globs if _type_matches(r, event_type)]
        if len(found) > 1:
            found.sort(key=lambda r: self._order[id(r)])
        return found

    def evaluate(self, event: Event) -> list[tuple[Rule, MatchResult]]:
        """Every rule listening to the event's type, with how it matched (FULL or PARTIAL)."""
        rules = self.candidates(event.type)
        if not rules:
            return []
        view = event_view(event)
        return [(rule, match(rule, event, view)) for rule in rules]

    def matching(self, event: Event) -> list[Rule]:
        """The rules that match `event` fully, in load order: the same as keeping the FULL outcomes of
        `evaluate`, without testing the rules that an anchor condition rules out."""
        index = self._anchor_index(event.type)
        if not index.rules:
            return []
        view = event_view(event)
        return [rule for rule in index.candidates(view)
                if match(rule, event, view, explain=False).outcome is Match.FULL]

    def explain(self, event: Event, limit: int) -> tuple[list[tuple[Rule, MatchResult]], int]:
        """The rules listening to the event's type that match it fully (as `matching` finds them) and, explained
        (as `evaluate` has them), at most `limit` of the others; all in load order, with how many others were
        left unexplained. The others explained first are the near misses: the rules the anchor index could not
        rule out; then the rest in load order. Costs `matching` plus `limit` explanations, whatever the rule count."""
        index = self._anchor_index(event.type)
        listening = index.listening
        if len(listening) <= limit:
            return self.evaluate(event), 0
        view = event_view(event)
        full: list[Rule] = []
        chosen: list[Rule] = []
        for rule in index.candidates(view):
            (full if match(rule, event, view, explain=False).outcome is Match.FULL else chosen).append(rule)
        if len(chosen) < limit:
            tested = {id(rule) for rule in full} | {id(rule) for rule in chosen}
            rest = (rule for rule in listening if id(rule) not in tested)
            chosen += itertools.islice(rest, limit - len(chosen))
        del chosen[limit:]
        found = [(rule, _plain(rule.name, True)) for rule in full] + [(r, match(r, event, view)) for r in chosen]
        found.sort(key=lambda pair: index.position[id(pair[0])])
        return found, len(listening) - len(full) - len(chosen)

    def _anchor_index(self, event_type: str) -> AnchorIndex:
        index = self._anchored.get(event_type)
        if index is None:
            rules = self.candidates(event_type)
            if not rules:
                return _NO_RULES
            index = AnchorIndex(rules)
            if len(self._anchored) >= MAX_CACHED_TYPES:
                self._anchored.pop(next(iter(self._anchored)))
            self._anchored[event_type] = index
        return index
