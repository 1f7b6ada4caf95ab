"""③ What a rule change would have done: recorded events run through the current rules and through a
proposed rule set, compared run by run. Pure: the caller reads the events (events/history.py) and prints.

For each event and each rule set, the runs it would start are what the engine's planning step asks for
(engine/plan.py: matching and parameter rendering, nothing else): per rule, the workflow and its rendered
parameters, or the render error that makes the run a failed one. A run is the same run in both sets when the
same rule starts it for the same event (its id derives from the rule and the event). Compared:

    new       the proposed rules start a run the current ones do not
    gone      the current rules start a run the proposed ones do not
    changed   both start it, with another workflow or other parameters (or one of them cannot render them)

The counts are before flow control, concurrency limits and schedule overlap policies (a debounce or a batch
merges several of these runs into one, a rate limit drops some, a limit delays them) and before the chain
depth limit; events are replayed as recorded, so the events that newly started runs would announce or emit
are not among them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..events.envelope import Event
from ..events.summary import summarize
from ..project import Project
from ..rules.match import RuleIndex
from ..rules.model import Rule
from .plan import plan_event

__all__ = ["CAVEATS", "EXAMPLES_MAX", "Backtest", "Start", "starts", "with_rules"]

EXAMPLES_MAX = 3
KINDS = ("new", "gone", "changed")
CAVEATS = ("counts are before flow control (debounce, batch, throttle, rate_limit, singleton: they merge, delay or "
           "drop runs), concurrency limits, overlap policies and the chain depth limit",
           "events are replayed as recorded: what newly started runs would announce or emit is not among them")


@dataclass(frozen=True)
class Start:
    """One run an event would start: its workflow and parameters, or why they do not render."""

    workflow: str
    params: Mapping[str, Any] | None
    error: str | None = None


def with_rules(project: Project, rules: list[Rule]) -> Project:
    """`project` with another rule set (its workflows and schedules kept)."""
    return replace(project, rules=rules, index=RuleIndex(rules))


def starts(project: Project, event: Event) -> dict[str, Start]:
    """The runs `event` would start under `project`'s rules, by rule (no flow control, no chain limit)."""
    requests, _ = plan_event(project, event, sample=0.0)  # the engine's own planning step, explaining nothing
    return {r.rule: Start(r.spec.name, r.params, r.error) for r in requests}


@dataclass
class _RuleCounts:
    current: Counter[str] = field(default_factory=Counter)  # runs, errors
    proposed: Counter[str] = field(default_factory=Counter)
    changes: Counter[str] = field(default_factory=Counter)  # new, gone, changed
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Backtest:
    """The comparison of two rule sets over a sequence of events, added one at a time."""

    events: int = 0
    undecodable: int = 0
    first: str | None = None  # entry ids of the first and last event read
    last: str | None = None
    rules: dict[str, _RuleCounts] = field(default_factory=dict)

    def add(self, entry_id: str, event: Event, current: Mapping[str, Start], proposed: Mapping[str, Start]) -> None:
        """Count one event's runs under both rule sets."""
        self.events += 1
        self.first, self.last = self.first or entry_id, entry_id
        for name in sorted(current.keys() | proposed.keys()):
            counts = self.rules.setdefault(name, _RuleCounts())
            before, after = current.get(name), proposed.get(name)
            _tally(counts.current, before)
            _tally(counts.proposed, after)
            kind = _kind(before, after)
            if kind is not None:
                counts.changes[kind] += 1
                examples = counts.examples.setdefault(kind, [])
                if len(examples) < EXAMPLES_MAX:
                    examples.append(_example(entry_id, event, before, after))

    def skip(self, entry_id: str) -> None:
        """An entry that is not an event (undecodable): counted, not compared."""
        self.undecodable += 1
        self.first, self.last = self.first or entry_id, entry_id

    def report(self) -> dict[str, Any]:
        """Everything, as JSON: totals, then per rule (by name) its counts and a few example events."""
        rules: list[dict[str, Any]] = [
            {"rule": name, "current": _runs(c.current), "proposed": _runs(c.proposed),
             **{kind: c.changes[kind] for kind in KINDS},
             "examples": {kind: c.examples[kind] for kind in KINDS if kind in c.examples}}
            for name, c in sorted(self.rules.items())]
        totals = {kind: sum(r[kind] for r in rules) for kind in KINDS}
        return {"events": self.events, "undecodable": self.undecodable, "first_entry": self.first,
                "last_entry": self.last, **totals,
                "current_runs": sum(r["current"]["runs"] for r in rules),
                "proposed_runs": sum(r["proposed"]["runs"] for r in rules),
                "rules": rules, "caveats": list(CAVEATS)}


def _tally(counts: Counter[str], start: Start | None) -> None:
    if start is not None:
        counts["runs"] += 1
        counts["errors"] += 1 if start.error is not None else 0


def _runs(counts: Counter[str]) -> dict[str, int]:
    return {"runs": counts["runs"], "errors": counts["errors"]}


def _kind(before: Start | None, after: Start | None) -> str | None:
    if before is None:
        return "new" if after is not None else None
    if after is None:
        return "gone"
    return "changed" if before != after else None


def _example(entry_id: str, event: Event, before: Start | None, after: Start | None) -> dict[str, Any]:
    out: dict[str, Any] = {"entry_id": entry_id, "event_id": event.id, "type": event.type}
    for side, start in (("current", before), ("proposed", after)):
        if start is not None:
            out[side] = {"workflow": start.workflow, **({"error": start.error} if start.error else
                                                        {"params": summarize(dict(start.params or {}))})}
    return out
