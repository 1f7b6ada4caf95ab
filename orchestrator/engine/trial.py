"""`orch rules test`: what a rule set does with one event, offline. Pure: no Redis, nothing started.

It runs the engine's own planning step (engine/plan.py) over the event, so a rule matches here exactly
when it would in `orch engine`, and reports each candidate rule (every rule listening to the event's
type): matched with its rendered parameters, matched but its parameters failed to render, or not
matched with the first predicate that failed (field path, value seen, value expected) or its `if:`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..errors import EventError
from ..events.envelope import Event, event_from_mapping
from ..project import Project
from ..rules.match import RuleIndex
from ..rules.model import MISSING, Match, Rule
from .plan import plan_event

__all__ = ["FILLED_ID", "FILLED_SOURCE", "event_for_test", "try_event"]

FILLED_ID = "orch-rules-test"
FILLED_SOURCE = "/orch/rules-test"
_ABSENT = object()


def event_for_test(values: Any) -> tuple[Event, list[str]]:
    """The event a test file holds, and the attributes filled in because the file left them out (a bare
    event needs only `type`; `id`, `specversion` and `source` get placeholders). EventError if invalid."""
    if not isinstance(values, Mapping):
        raise EventError(f"an event file must hold a JSON object (a CloudEvent), not {type(values).__name__}")
    if not values.get("type"):
        raise EventError("the event has no 'type': a rule test needs at least the event's type", field="type")
    filled = {name: value for name, value in (("specversion", "1.0"), ("id", FILLED_ID), ("source", FILLED_SOURCE))
              if name not in values}
    return event_from_mapping({**values, **filled}), list(filled)


def try_event(project: Project, event: Event, rules: list[Rule] | None = None) -> list[dict[str, Any]]:
    """Each rule listening to `event`'s type (of `rules`, default the project's) with its outcome."""
    if rules is not None:
        project = replace(project, rules=rules, index=RuleIndex(rules))
    requests, outcomes = plan_event(project, event, explain_limit=None)  # offline: explain every rule
    by_rule = {request.rule: request for request in requests}
    workflows = {rule.name: rule.workflow for rule in project.rules}
    report = []
    for result, _metric in outcomes:
        item: dict[str, Any] = {"rule": result.rule, "workflow": workflows.get(result.rule),
                                "matched": result.outcome is Match.FULL}
        request = by_rule.get(result.rule)
        if result.outcome is Match.FULL and request is not None:
            item.update(params=request.params, error=request.error)
        else:
            item.update(stopped_by=result.stopped_by, reason=result.reason)
            if result.path is not None:
                seen = {"missing": True} if result.seen is MISSING else {"seen": result.seen}
                item.update(path=result.path, **seen, expected=result.expected)
        report.append(item)
    return report
