"""④ ⑧ What a waiting step is matched with: its `Waiter` (pattern, correlation, the run's params and the
results the correlation reads), as the engine keeps it in Redis, and how waiters are indexed by the
value their correlation requires (`correlation_key`, `index_value`; engine/waitindex.py).

Pure. The pattern is compiled by the rules' own matcher (a one-rule `Rule` through `rules.match.match`),
so a wait understands every pattern a rule does; the correlation is CEL (rules/expr.py).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..errors import RuleError
from ..events.envelope import Event
from ..rules.expr import Expression, compile_expression
from ..rules.match import match
from ..rules.model import Match, Rule, RuleConfig

__all__ = ["Waiter", "correlation_key", "index_value", "path_value", "wait_rule"]

log = logging.getLogger(__name__)


_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_EQUALITY = re.compile(rf"^(data\.{_PATH})\s*==\s*((?:params|results)\.{_PATH})$")
_EQUALITY_REVERSED = re.compile(rf"^((?:params|results)\.{_PATH})\s*==\s*(data\.{_PATH})$")
_NOT_A_PLAIN_CONJUNCTION = frozenset("|?()!\"'[]")


@functools.lru_cache(maxsize=1024)
def correlation_key(text: str | None) -> tuple[str, str] | None:
    """The equality a correlation requires, when it has one the engine can index waiters by: a
    `data.<path> == params.<path>` (or `results.<task>.<path>`, either side first) that is the whole
    expression or one of its top-level `&&` terms. (event path, waiter path), or None.

    Sound because such an expression is never true unless that equality is: a waiter whose value differs
    from the event's need not be evaluated. Anything with `||`, `?:`, parentheses, negation, quotes or
    indexing is not split (None: every waiter is evaluated)."""
    if not text or _NOT_A_PLAIN_CONJUNCTION & set(text):
        return None
    for term in (t.strip() for t in text.split("&&")):
        found = _EQUALITY.match(term)
        if found:
            return found.group(1), found.group(2)
        found = _EQUALITY_REVERSED.match(term)
        if found:
            return found.group(2), found.group(1)
    return None


_MISSING = object()


def index_value(value: Any) -> tuple[Any, ...] | None:
    """The key a scalar is indexed by: equal for values CEL's `==` finds equal (1 and 1.0), different
    across types (True is not 1, "1" is not 1); None for what is not indexed (absent, a list or map)."""
    if value is _MISSING or isinstance(value, list | dict):
        return None
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", int(value) if isinstance(value, float) and value.is_integer() else value)
    return ("s", value) if isinstance(value, str) else ("z",) if value is None else None


def path_value(root: Mapping[str, Any], path: str) -> Any:
    """The value at dotted `path` in `root` (`_MISSING` when there is none)."""
    value: Any = root
    for name in path.split("."):
        if not isinstance(value, Mapping) or name not in value:
            return _MISSING
        value = value[name]
    return value


@functools.lru_cache(maxsize=1024)
def wait_rule(event_type: str, pattern: str) -> Rule:
    """The wait's pattern as a one-rule Rule: compiled by whatever compiles a rule's `match:`."""
    config = RuleConfig(name="wait", type=event_type, match=json.loads(pattern), workflow="-")
    return Rule.from_config(config)


@functools.lru_cache(maxsize=1024)
def _expression(text: str) -> Expression:
    return compile_expression(text)


@dataclass(frozen=True)
class Waiter:
    """One waiting step, as registered in Redis (engine/waits.py) under its event type."""

    run: str
    node: str
    attempt: int
    event: str
    pattern: Mapping[str, Any]
    correlate: str | None
    params: Mapping[str, Any]
    results: Mapping[str, Any]
    trigger: Mapping[str, Any]
    since_ms: int

    @property
    def member(self) -> str:
        return f"{self.run}\x1f{self.node}\x1f{self.attempt}"

    def index_key(self) -> tuple[str, tuple[Any, ...]] | None:
        """(event path, key of the value it must equal) when the correlation has an indexable equality
        (`correlation_key`) and this step's side of it has a scalar value; else None."""
        key = correlation_key(self.correlate)
        if key is None:
            return None
        value = index_value(path_value({"params": self.params, "results": self.results}, key[1]))
        return (key[0], value) if value is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "node": self.node, "attempt": self.attempt, "event": self.event,
                "match": dict(self.pattern), "correlate": self.correlate, "params": dict(self.params),
                "results": dict(self.results), "trigger": dict(self.trigger), "since_ms": self.since_ms}

    @classmethod
    def from_dict(cls, body: Any) -> Waiter:
        """A waiter read back from Redis (untrusted): ValueError when it is not one."""
        if not isinstance(body, dict):
            raise ValueError("a waiter is a JSON object")
        out = cls(run=body["run"], node=body["node"], attempt=body["attempt"], event=body["event"],
                  pattern=body.get("match") or {}, correlate=body.get("correlate"), params=body.get("params") or {},
                  results=body.get("results") or {}, trigger=body.get("trigger") or {},
                  since_ms=body.get("since_ms", 0))
        texts = (out.run, out.node, out.event)
        if not all(isinstance(t, str) for t in texts) or not isinstance(out.attempt, int) \
                or not all(isinstance(m, dict) for m in (out.pattern, out.params, out.results, out.trigger)) \
                or not isinstance(out.correlate, str | None):
            raise ValueError("a waiter's fields have the wrong types")
        return out

    def matches(self, event: Event, view: Mapping[str, Any]) -> bool:
        """Whether `event` (with its rule view) resumes this step: its type, the pattern, the correlation.
        A correlation that cannot be evaluated (a missing field, a type mismatch) is no match."""
        return self.test(event, view) is True

    def test(self, event: Event, view: Mapping[str, Any]) -> bool | str:
        """`matches`, saying why a pattern or correlation could not be evaluated: True, False, or that
        message (the engine shows it on the step, engine/waits.py: a correlation that always fails)."""
        if event.type != self.event:
            return False
        try:
            if match(wait_rule(self.event, json.dumps(self.pattern, sort_keys=True)), event, view).outcome \
                    is not Match.FULL:
                return False
            if self.correlate is None:
                return True
            activation = {"event": view, "data": view.get("data"), "params": self.params, "results": self.results,
                          "trigger": self.trigger}
            value = _expression(self.correlate).evaluate(activation)
        except (RuleError, ValidationError, TypeError, ValueError) as exc:
            log.debug("waiter %s of run %s: event %s does not match: %s", self.node, self.run, event.id, exc)
            return f"correlate {self.correlate!r} could not be evaluated: {exc}"
        if not isinstance(value, bool):
            return f"correlate {self.correlate!r} gave {type(value).__name__}, not true or false"
        return value
