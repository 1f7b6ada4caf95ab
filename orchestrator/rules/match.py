"""③ Matching events to rules: pure, indexed by event type, and able to say why a rule did not fire."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from ..events.envelope import Event
from .ifexpr import check_if
from .model import MISSING, Condition, Match, MatchResult, Rule

__all__ = ["RuleIndex", "event_view", "match"]

_GLOB_CHARS = frozenset("*?[")
_ABSENT = object()


def event_view(event: Event) -> dict[str, Any]:
    """The fields a rule can test and a template can read: CloudEvents attributes, extensions, data."""
    view = event.to_dict()
    view.setdefault("data", None)
    return view


def _lookup(view: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = view
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part, _ABSENT)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _ABSENT
        if value is _ABSENT:
            return _ABSENT
    return value


def _equal(actual: Any, expected: Any) -> bool:
    # YAML `true` must not equal the number 1, nor `1` equal true, as Python's == would have it.
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual is expected
    return bool(actual == expected)


def _describe(values: tuple[Any, ...]) -> str:
    return repr(values[0]) if len(values) == 1 else "one of " + ", ".join(map(repr, values))


def _check(rule: Rule, condition: Condition, view: Mapping[str, Any]) -> MatchResult | None:
    """None when the condition holds; else the PARTIAL result naming the path, the value seen and expected."""
    actual = _lookup(view, condition.path)
    if actual is not _ABSENT and any(_equal(actual, expected) for expected in condition.expected):
        return None
    said = "missing" if actual is _ABSENT else f"{actual!r}"
    reason = f"{condition.name} is {said} (expected {_describe(condition.expected)})"
    written = condition.expected[0] if len(condition.expected) == 1 else list(condition.expected)
    return MatchResult(rule.name, Match.PARTIAL, reason, "match", condition.name,
                       MISSING if actual is _ABSENT else actual, written)


def _type_matches(rule: Rule, event_type: str) -> bool:
    return any(fnmatchcase(event_type, pattern) for pattern in rule.types)


def match(rule: Rule, event: Event, view: Mapping[str, Any] | None = None) -> MatchResult:
    """NONE if the type is not the rule's; PARTIAL with the first failed condition; else FULL."""
    if not _type_matches(rule, event.type):
        return MatchResult(rule.name, Match.NONE)
    if not rule.enabled:
        return MatchResult(rule.name, Match.PARTIAL, "the rule is disabled", "disabled")
    if rule.source is not None and not fnmatchcase(event.source, rule.source):
        return MatchResult(rule.name, Match.PARTIAL, f"source {event.source!r} does not match {rule.source!r}",
                           "source")
    view = view if view is not None else event_view(event)
    for condition in rule.conditions:
        failed = _check(rule, condition, view)
        if failed is not None:
            return failed
    if rule.if_expr is not None and (reason := check_if(rule.if_expr, view)) is not None:
        return MatchResult(rule.name, Match.PARTIAL, reason, "if")
    return MatchResult(rule.name, Match.FULL)


class RuleIndex:
    """Rules indexed by exact event type; glob rules are checked for every event."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        self._exact: dict[str, list[Rule]] = {}
        self._globs: list[Rule] = []
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
            order = {id(r): i for i, r in enumerate(self.rules)}
            found.sort(key=lambda r: order[id(r)])
        return found

    def evaluate(self, event: Event) -> list[tuple[Rule, MatchResult]]:
        """Every rule listening to the event's type, with how it matched (FULL or PARTIAL)."""
        rules = self.candidates(event.type)
        if not rules:
            return []
        view = event_view(event)
        return [(rule, match(rule, event, view)) for rule in rules]
