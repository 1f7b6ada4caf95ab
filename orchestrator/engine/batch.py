"""③ + ⑧ One engine batch: the runs its events ask for and the task records it carries, applied to the
runs as they are in Redis. Pure: the engine reads the runs, calls `apply_batch`, and commits the result.

Where a run starts, is steered or ends, the step is lifecycle.py's (with the slots, guards and cancel
markers it takes and frees); what happens to tasks is advance.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import WorkflowError
from ..events.decisions import Decision
from ..events.stream import Entry
from ..logsetup import about
from ..metrics import (
    CHAINS_CUT,
    EVENT_TO_RUN,
    RULE_EVALUATIONS,
    RULE_MISSES,
    RUN_DURATION,
    RUNS_FINISHED,
    RUNS_STARTED,
    SCHEDULE_OVERLAPS,
    TASK_DURATION,
    TASK_WAIT,
    TASKS_FINISHED,
    MetricsBatch,
    miss_reason,
)
from ..rules.model import MatchResult
from ..workflows import lifecycle, waiting
from ..workflows.advance import Change, Timer, apply_record, apply_timer, settle
from ..workflows.lifecycle import Effects, Resources, RunRequest
from ..workflows.pools import Claim, workflow_claim
from ..workflows.records import ControlRecord, TaskRecord
from ..workflows.runs import Run
from ..workflows.spec import WorkflowSpec
from ..workflows.waiting import WaitHit
from ..workflows.work import RUN_TIMER

__all__ = ["Batch", "EventDecisions", "Outcome", "apply_batch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventDecisions:
    """What planning decided for one event's candidate rules (completed when the batch is applied)."""

    entry: Entry
    event: dict[str, str]  # id, source, type
    depth: int
    decisions: list[Decision]
    omitted: int = 0  # rules listening to the type that planning left unexplained (plan.Outcomes.omitted)


@dataclass
class Batch:
    """What the entries of one read ask for, in stream order."""

    requests: list[tuple[Entry, list[RunRequest]]] = field(default_factory=list)
    records: list[tuple[Entry, TaskRecord | ControlRecord]] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)  # due retries and run timeouts
    settled: list[Entry] = field(default_factory=list)  # entries with nothing to do but acknowledge
    failed: dict[Entry, str] = field(default_factory=dict)  # entries that could not be planned, with why
    evaluations: MetricsBatch = field(default_factory=MetricsBatch)
    decisions: list[EventDecisions] = field(default_factory=list)  # per event with candidate rules
    bodies: list[tuple[Entry, Any]] = field(default_factory=list)  # the events read, decoded (engine/waits.py)
    hits: list[WaitHit] = field(default_factory=list)  # waiting steps the events (or look-backs) resume
    wait_errors: list[tuple[str, str, int, str]] = field(default_factory=list)  # (run, node, attempt, why):
    #                                            waiting steps whose correlation could not be evaluated
    memos: list[str] = field(default_factory=list)  # flow-control decisions, kept a while past the commit (flow/)

    def claims(self, existing: Mapping[str, Run | Exception], current: Mapping[str, WorkflowSpec]) -> dict[str, Claim]:
        """The slot pools (pools.py) this batch may take slots of: those of requested runs, of retried runs,
        and of reruns (the workflow's current version)."""
        claims = [r.pool_claim for _, requests in self.requests for r in requests]
        for _, record in self.records:
            run = existing.get(record.run)
            if isinstance(record, ControlRecord) and record.action in ("retry", "rerun") and isinstance(run, Run):
                spec = run.spec if record.action == "retry" else current.get(run.workflow, run.spec)
                claims.append(run.slot or workflow_claim(spec.name, spec.concurrency))
        return {c.pool: c for c in reversed(claims) if c is not None}  # the first claim of a pool wins

    @property
    def only_settled(self) -> bool:
        """Whether committing it would only acknowledge its entries: no runs, records, timers, decisions,
        counts, look-backs or flow-control memos (announcements no rule hears, events no rule is for)."""
        return bool(self.settled) and not (self.requests or self.records or self.timers or self.failed
                                           or self.decisions or self.hits or self.wait_errors or self.memos
                                           or self.evaluations)

    @property
    def guards(self) -> list[str]:
        """The schedule overlap guards the requested runs need."""
        return sorted({r.guard for _, requests in self.requests for r in requests if r.guard})

    def add_evaluations(self, event_id: str, outcomes: Sequence[tuple[MatchResult, str]]) -> None:
        """Count the rules evaluated for one event by result, and those that did not match by what stopped
        them (an event outside ORCH_EXPLAIN_SAMPLE brings matched and error results only)."""
        for result, label in outcomes:
            self.evaluations.inc(RULE_EVALUATIONS, result.rule, label)
            if label == "not_matched":
                self.evaluations.inc(RULE_MISSES, result.rule, miss_reason(result.stopped_by))
                log.debug("event %s: rule %s did not match: %s", event_id, result.rule, result.reason)

    @property
    def run_ids(self) -> list[str]:
        ids = {r.run_id for _, requests in self.requests for r in requests}
        ids.update(record.run for _, record in self.records)
        ids.update(r.new_run for _, r in self.records if isinstance(r, ControlRecord) and r.new_run)
        ids.update(t.run_id for t in self.timers)
        ids.update(h.run for h in self.hits)
        ids.update(run for run, _, _, _ in self.wait_errors)
        return sorted(ids)

    def __len__(self) -> int:
        return len(self.requests) + len(self.records) + len(self.settled) + len(self.timers)


@dataclass
class Outcome:
    """The result of applying a batch: changed runs, entries to acknowledge, entries that failed, and what
    the runs' lifecycle steps take and free."""

    changes: list[Change]
    ack: list[Entry]
    failed: dict[Entry, str]
    metrics: MetricsBatch
    effects: Effects = field(default_factory=Effects)
    ignored_records: int = 0
    fired: list[str] = field(default_factory=list)  # timer members to remove


def apply_batch(batch: Batch, existing: dict[str, Run | Exception], now: datetime,
                resources: Resources | None = None, current: Mapping[str, WorkflowSpec] | None = None) -> Outcome:
    """Create the requested runs that do not exist yet, apply records, steering requests, the waiting steps
    the batch's events resume (`hits`, engine/waits.py) and due timers.

    `resources` are the free slots and overlap guards read for the batch; `current` the workflows' current
    versions (a rerun uses them).
    """
    changes: dict[str, Change] = {}
    outcome = Outcome([], list(batch.settled), dict(batch.failed), MetricsBatch())
    resources = resources or Resources()
    for entry, requests in batch.requests:
        for request in requests:
            if request.run_id not in changes and not existing.get(request.run_id):
                change = lifecycle.create(request, now, resources, outcome.effects, _arrival(entry, now))
                if change is not None:
                    changes[request.run_id] = change
                if change is not None and not change.cut:
                    outcome.metrics.observe(EVENT_TO_RUN, _since_entry_s(entry, now), change.run.workflow)
        outcome.ack.append(entry)
    touched = _apply_records(batch, existing, changes, now, resources, current or {}, outcome)
    _apply_hits(batch, existing, changes, now, touched)  # before the timers: against its timeout, an event wins
    for timer in batch.timers:
        change = _change(timer.run_id, changes, existing)
        outcome.fired.append(timer.member)
        if change is None:
            continue
        if timer.node == RUN_TIMER:
            lifecycle.timeout(change, now)
        elif apply_timer(change, timer, now, settle_now=False):
            touched[change.run.id] = change
    for change in touched.values():
        settle(change, now)
    dirty = [c for c in changes.values() if c.dirty]
    lifecycle.ended(dirty, outcome.effects)
    outcome.metrics.merge(batch.evaluations)
    _count(dirty, outcome)
    outcome.changes = dirty
    return outcome


def _apply_records(batch: Batch, existing: dict[str, Run | Exception], changes: dict[str, Change], now: datetime,
                   resources: Resources, current: Mapping[str, WorkflowSpec], outcome: Outcome) -> dict[str, Change]:
    touched: dict[str, Change] = {}
    for entry, record in batch.records:
        try:
            change = _change(record.run, changes, existing)
            if change is None:
                outcome.ignored_records += 1
                log.warning("%s for unknown run %s ignored", _what(record), record.run, extra=_about(record))
            elif isinstance(record, ControlRecord):
                _steer(record, change, changes, existing, now, resources, current, outcome.effects)
            elif apply_record(change, record, now, settle_now=False):
                touched[change.run.id] = change
            outcome.ack.append(entry)
        except Exception as exc:  # noqa: BLE001 - one bad record must not block the batch
            log.exception("cannot apply %s of run %s (entry %s)", _what(record), record.run, entry.id,
                          extra=_about(record))
            outcome.failed[entry] = f"{type(exc).__name__}: {exc}"
    return touched


def _apply_hits(batch: Batch, existing: dict[str, Run | Exception], changes: dict[str, Change], now: datetime,
                touched: dict[str, Change]) -> None:
    """Resume the waiting steps the batch's events (or look-backs) matched (engine/waits.py)."""
    for hit in batch.hits:
        try:
            change = _change(hit.run, changes, existing)
        except Exception:  # noqa: BLE001 - a run that cannot be read is not resumed; the others are
            log.warning("run %s cannot be read: its step %s is not resumed", hit.run, hit.node, extra=about(hit.run))
            continue
        if change is not None and waiting.resolve(change, hit, now):
            touched[change.run.id] = change
    for run_id, node, attempt, why in batch.wait_errors:  # after the hits: a resumed step needs no error
        try:
            change = _change(run_id, changes, existing)
        except Exception:  # noqa: BLE001 - an error that cannot be shown is still in the engine's log
            continue
        if change is not None:
            waiting.note_error(change, node, attempt, why)


def _arrival(entry: Entry, now: datetime) -> tuple[int, int]:
    """When `entry` arrived in its stream (its id: epoch ms, sequence): a waiting run's place in line."""
    ms, _, seq = entry.id.partition("-")
    return (int(ms), int(seq)) if ms.isdigit() and seq.isdigit() else (int(now.timestamp() * 1000), 0)


def _since_entry_s(entry: Entry, now: datetime) -> float:
    """Seconds from `entry`'s arrival in its stream (the milliseconds of its id, Redis's clock) to `now`."""
    ms, _, _ = entry.id.partition("-")
    return max(0.0, now.timestamp() - int(ms) / 1000) if ms.isdigit() else 0.0


def _about(record: TaskRecord | ControlRecord) -> dict[str, object]:
    """What a log record about `record` names (JSON process logs)."""
    if isinstance(record, TaskRecord):
        return about(record.run, record.node, record.attempt)
    return about(record.run)


def _what(record: TaskRecord | ControlRecord) -> str:
    if isinstance(record, ControlRecord):
        return f"{record.action} request"
    return f"record of task {record.node} (attempt {record.attempt})"


def _change(run_id: str, changes: dict[str, Change], existing: dict[str, Run | Exception]) -> Change | None:
    change = changes.get(run_id)
    if change is None:
        run = existing.get(run_id)
        if run is None:
            return None
        if isinstance(run, Exception):
            raise run  # a run that cannot be read: fails the entries about it, not the batch
        change = changes[run_id] = Change(run)
    return change


def _steer(record: ControlRecord, change: Change, changes: dict[str, Change], existing: dict[str, Run | Exception],
           now: datetime, resources: Resources, current: Mapping[str, WorkflowSpec], effects: Effects) -> None:
    run = change.run
    if record.action == "cancel":
        done = lifecycle.cancel(change, now, record.by)
    elif record.action == "start":
        done = lifecycle.start(change, now)
    elif record.action == "retry":
        done = lifecycle.retry(change, now, resources, effects)
    elif record.action == "approve":
        done = waiting.approve(change, record.node, record.data, record.by, now, record.request)
        if done:
            settle(change, now)
    elif record.new_run and record.new_run not in changes and not existing.get(record.new_run):
        try:
            copy = changes[record.new_run] = lifecycle.rerun(run, record.new_run, now, resources, effects,
                                                             spec=current.get(run.workflow), from_node=record.from_node)
        except WorkflowError as exc:
            log.warning("rerun of run %s refused: %s", run.id, exc, extra=about(run.id))
            return
        lifecycle.note(change, "rerun", record.by, now, new_run=copy.run.id)
        lifecycle.note(copy, "rerun", record.by, now, of=run.id)
        return
    else:
        return
    if not done:
        log.info("%s of run %s ignored: it is %s", record.action, run.id, run.status, extra=about(run.id))
    elif record.action != "start":
        lifecycle.note(change, record.action, record.by, now, **({"task": record.node} if record.node else {}))


def _count(changes: list[Change], outcome: Outcome) -> None:
    metrics = outcome.metrics
    for schedule, action in outcome.effects.overlaps:
        metrics.inc(SCHEDULE_OVERLAPS, schedule, action)
    for change in changes:
        run = change.run
        if change.cut:  # a record of a run not started: counted as a cut chain, not as a run (nor a failure)
            metrics.inc(CHAINS_CUT, run.rule)
            continue
        if change.created:
            metrics.inc(RUNS_STARTED, run.workflow)
        for task in change.retried:
            metrics.inc(TASKS_FINISHED, run.workflow, task.task, "retried")
        if change.finished:
            metrics.inc(RUNS_FINISHED, run.workflow, str(run.status))
            metrics.observe(RUN_DURATION, run.duration_s or 0.0, run.workflow, str(run.status))
        for task in change.started:
            if task.queued_at and task.started_at:
                metrics.observe(TASK_WAIT, (task.started_at - task.queued_at).total_seconds(), task.queue)
        for task in change.finished_tasks:
            metrics.inc(TASKS_FINISHED, run.workflow, task.task, str(task.state))
            metrics.observe(TASK_DURATION, task.duration_s or 0.0, run.workflow, task.task, str(task.state))
