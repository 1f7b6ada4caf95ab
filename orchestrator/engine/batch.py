"""③ + ⑧ One engine batch: the runs its events ask for and the task records it carries, applied to the
runs as they are in Redis. Pure: the engine reads the runs, calls `apply_batch`, and commits the result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from ..errors import WorkflowError
from ..events.stream import Entry
from ..metrics import (
    RULE_EVALUATIONS,
    RUN_DURATION,
    RUNS_FINISHED,
    RUNS_STARTED,
    SCHEDULE_OVERLAPS,
    TASK_DURATION,
    TASK_WAIT,
    TASKS_FINISHED,
    MetricsBatch,
)
from ..workflows.advance import (
    Change,
    Timer,
    apply_record,
    apply_timer,
    failed_run,
    new_run,
    settle,
    start_queued,
)
from ..workflows.records import ControlRecord, TaskRecord
from ..workflows.runs import Run
from ..workflows.steering import cancel_run, rerun, retry_run
from .plan import RunRequest

__all__ = ["Batch", "Guard", "Outcome", "apply_batch"]

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """What the entries of one read ask for, in stream order."""

    requests: list[tuple[Entry, list[RunRequest]]] = field(default_factory=list)
    records: list[tuple[Entry, TaskRecord | ControlRecord]] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)  # due retries and run timeouts
    settled: list[Entry] = field(default_factory=list)  # entries with nothing to do but acknowledge
    failed: dict[Entry, str] = field(default_factory=dict)  # entries that could not be planned, with why
    evaluations: MetricsBatch = field(default_factory=MetricsBatch)

    @property
    def limits(self) -> dict[str, int]:
        """Workflows with a concurrency limit that requested runs belong to, with their limit."""
        return {r.spec.name: r.spec.concurrency for _, requests in self.requests for r in requests
                if r.spec.concurrency is not None}

    @property
    def guards(self) -> list[str]:
        """The schedule overlap guards the requested runs need."""
        return sorted({r.guard for _, requests in self.requests for r in requests if r.guard})

    def add_evaluation(self, rule: str, result: str) -> None:
        self.evaluations.inc(RULE_EVALUATIONS, rule, result)

    @property
    def run_ids(self) -> list[str]:
        ids = {r.run_id for _, requests in self.requests for r in requests}
        ids.update(record.run for _, record in self.records)
        ids.update(r.new_run for _, r in self.records if isinstance(r, ControlRecord) and r.new_run)
        ids.update(t.run_id for t in self.timers)
        return sorted(ids)

    def __len__(self) -> int:
        return len(self.requests) + len(self.records) + len(self.settled) + len(self.timers)


@dataclass
class Outcome:
    """The result of applying a batch: changed runs, entries to acknowledge, entries that failed."""

    changes: list[Change]
    ack: list[Entry]
    failed: dict[Entry, str]
    metrics: MetricsBatch
    ignored_records: int = 0
    fired: list[str] = field(default_factory=list)  # timer members to remove
    take: dict[str, str] = field(default_factory=dict)  # guard -> the run that now holds it
    queue: dict[str, bytes] = field(default_factory=dict)  # guard -> the event held by queue-one
    release: list[tuple[str, str]] = field(default_factory=list)  # (guard, run) of guarded runs that ended
    occupy: list[tuple[str, str]] = field(default_factory=list)  # (workflow, run) taking a concurrency slot
    wait: list[tuple[str, str, datetime]] = field(default_factory=list)  # (workflow, run, created) queued
    vacate: list[tuple[str, str]] = field(default_factory=list)  # (workflow, run) of limited runs that ended


@dataclass(frozen=True)
class Guard:
    """A schedule's overlap guard as read before the batch: the running run holding it, a held event."""

    holder: str | None = None
    queued: bool = False


def apply_batch(batch: Batch, existing: dict[str, Run | Exception], now: datetime,
                guards: dict[str, Guard] | None = None, free: dict[str, int] | None = None) -> Outcome:
    """Create the requested runs that do not exist yet, apply records, steering requests and due timers.

    A request guarded by its schedule's overlap policy while the schedule's previous run still runs is
    skipped, or (queue-one) its event is held until that run ends; at most one event is held. A run of a
    workflow with a concurrency limit takes one of its `free` slots, or is created queued.
    """
    changes: dict[str, Change] = {}
    metrics = MetricsBatch()
    held = dict(guards or {})
    outcome = Outcome([], list(batch.settled), dict(batch.failed), metrics)
    _start_runs(batch, existing, now, held, outcome, changes, dict(free or {}))
    touched: dict[str, Change] = {}
    for entry, record in batch.records:
        try:
            change = _change(record.run, changes, existing)
            if change is None:
                outcome.ignored_records += 1
                log.warning("%s for unknown run %s ignored", _what(record), record.run)
            elif isinstance(record, ControlRecord):
                _steer(record, change, changes, existing, now)
            elif apply_record(change, record, now, settle_now=False):
                touched[change.run.id] = change
            outcome.ack.append(entry)
        except Exception as exc:  # noqa: BLE001 - one bad record must not block the batch
            log.exception("cannot apply %s of run %s (entry %s)", _what(record), record.run, entry.id)
            outcome.failed[entry] = f"{type(exc).__name__}: {exc}"
    for timer in batch.timers:
        change = _change(timer.run_id, changes, existing)
        outcome.fired.append(timer.member)
        if change is not None and apply_timer(change, timer, now, settle_now=False):
            touched[change.run.id] = change
    for change in touched.values():
        settle(change, now)
    dirty = [c for c in changes.values() if c.dirty]
    metrics.merge(batch.evaluations)
    _count(dirty, metrics)
    outcome.release = [(c.run.guard, c.run.id) for c in dirty if c.finished and c.run.guard]
    outcome.vacate = [(c.run.workflow, c.run.id) for c in dirty if c.finished and c.run.spec.concurrency]
    outcome.changes = dirty
    return outcome


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


def _steer(record: ControlRecord, change: Change, changes: dict[str, Change],
           existing: dict[str, Run | Exception], now: datetime) -> None:
    if record.action == "cancel":
        if not cancel_run(change, now, record.by):
            log.info("cancel of run %s ignored: it is %s", change.run.id, change.run.status)
    elif record.action == "start":
        if not start_queued(change, now):
            log.info("start of queued run %s ignored: it is %s", change.run.id, change.run.status)
    elif record.action == "retry":
        if not retry_run(change, now):
            log.info("retry of run %s ignored: it is %s", change.run.id, change.run.status)
    elif record.new_run and record.new_run not in changes and not existing.get(record.new_run):
        try:
            changes[record.new_run] = rerun(change.run, record.new_run, now, record.from_node)
        except WorkflowError as exc:
            log.warning("rerun of run %s refused: %s", change.run.id, exc)


def _start_runs(batch: Batch, existing: dict[str, Run | Exception], now: datetime, held: dict[str, Guard],
                outcome: Outcome, changes: dict[str, Change], free: dict[str, int]) -> None:
    for entry, requests in batch.requests:
        for request in requests:
            if request.run_id in changes or existing.get(request.run_id):
                continue
            if request.guard and request.error is None:
                if not _may_start(request, request.guard, held, outcome):
                    continue
                held[request.guard] = Guard(request.run_id, held.get(request.guard, Guard()).queued)
                outcome.take[request.guard] = request.run_id
            queued = False
            if request.spec.concurrency is not None and request.error is None:
                queued = free.get(request.spec.name, 0) <= 0
                if queued:
                    outcome.wait.append((request.spec.name, request.run_id, now))
                else:
                    free[request.spec.name] -= 1
                    outcome.occupy.append((request.spec.name, request.run_id))
            change = changes[request.run_id] = _create(request, now, queued)
            change.run.guard = request.guard if request.error is None else None
        outcome.ack.append(entry)


def _may_start(request: RunRequest, name: str, held: dict[str, Guard], outcome: Outcome) -> bool:
    guard = held.get(name, Guard())
    if guard.holder is None or guard.holder == request.run_id:
        return True
    schedule = name.split("/", 1)[0]
    if request.overlap == "queue-one" and not guard.queued and request.raw is not None:
        outcome.queue[name] = request.raw
        held[name] = Guard(guard.holder, True)
        outcome.metrics.inc(SCHEDULE_OVERLAPS, schedule, "queued")
        log.info("schedule %s: run %s still running; event %s held until it ends", schedule, guard.holder,
                 request.event.id)
    else:
        outcome.metrics.inc(SCHEDULE_OVERLAPS, schedule, "skipped")
        log.info("schedule %s: run %s still running; event %s skipped (overlap: %s)", schedule, guard.holder,
                 request.event.id, request.overlap)
    return False


def _create(request: RunRequest, now: datetime, queued: bool = False) -> Change:
    if request.error is not None or request.params is None:
        return failed_run(request.run_id, request.spec, request.rule, request.event, request.error or "", now)
    return new_run(request.run_id, request.spec, request.rule, request.event, request.params, now,
                   request.event_data, queued=queued)


def _count(changes: list[Change], metrics: MetricsBatch) -> None:
    for change in changes:
        run = change.run
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
