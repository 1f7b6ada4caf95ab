"""③ + ⑧ One engine batch: the runs its events ask for and the task records it carries, applied to the
runs as they are in Redis. Pure: the engine reads the runs, calls `apply_batch`, and commits the result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

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
from ..workflows.advance import Change, apply_record, failed_run, new_run
from ..workflows.records import TaskRecord
from ..workflows.runs import Run
from .plan import RunRequest

__all__ = ["Batch", "Guard", "Outcome", "apply_batch"]

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """What the entries of one read ask for, in stream order."""

    requests: list[tuple[Entry, list[RunRequest]]] = field(default_factory=list)
    records: list[tuple[Entry, TaskRecord]] = field(default_factory=list)
    settled: list[Entry] = field(default_factory=list)  # entries with nothing to do but acknowledge
    failed: dict[Entry, str] = field(default_factory=dict)  # entries that could not be planned, with why
    evaluations: MetricsBatch = field(default_factory=MetricsBatch)

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
        return sorted(ids)

    def __len__(self) -> int:
        return len(self.requests) + len(self.records) + len(self.settled)


@dataclass
class Outcome:
    """The result of applying a batch: changed runs, entries to acknowledge, entries that failed."""

    changes: list[Change]
    ack: list[Entry]
    failed: dict[Entry, str]
    metrics: MetricsBatch
    ignored_records: int = 0
    take: dict[str, str] = field(default_factory=dict)  # guard -> the run that now holds it
    queue: dict[str, bytes] = field(default_factory=dict)  # guard -> the event held by queue-one
    release: list[tuple[str, str]] = field(default_factory=list)  # (guard, run) of guarded runs that ended


@dataclass(frozen=True)
class Guard:
    """A schedule's overlap guard as read before the batch: the running run holding it, a held event."""

    holder: str | None = None
    queued: bool = False


def apply_batch(batch: Batch, existing: dict[str, dict[bytes, bytes]], now: datetime,
                guards: dict[str, Guard] | None = None) -> Outcome:
    """Create the requested runs that do not exist yet and apply the records to their runs.

    A request guarded by its schedule's overlap policy while the schedule's previous run still runs is
    skipped, or (queue-one) its event is held until that run ends; at most one event is held.
    """
    changes: dict[str, Change] = {}
    ack = list(batch.settled)
    failed = dict(batch.failed)
    metrics = MetricsBatch()
    held = dict(guards or {})
    outcome = Outcome([], ack, failed, metrics)
    _start_runs(batch, existing, now, held, outcome, changes)
    ignored = 0
    for entry, record in batch.records:
        try:
            change = changes.get(record.run)
            if change is None:
                fields = existing.get(record.run)
                if not fields:
                    ignored += 1
                    log.warning("record for unknown run %s (task %s) ignored", record.run, record.node)
                    ack.append(entry)
                    continue
                change = changes[record.run] = Change(Run.from_fields(fields))
            apply_record(change, record, now)
            ack.append(entry)
        except Exception as exc:  # noqa: BLE001 - one bad record must not block the batch
            log.exception("cannot apply record %s of run %s", entry.id, record.run)
            failed[entry] = f"{type(exc).__name__}: {exc}"
    dirty = [c for c in changes.values() if c.dirty]
    metrics.merge(batch.evaluations)
    _count(dirty, metrics)
    outcome.release = [(c.run.guard, c.run.id) for c in dirty if c.finished and c.run.guard]
    outcome.changes, outcome.ignored_records = dirty, ignored
    return outcome


def _start_runs(batch: Batch, existing: dict[str, dict[bytes, bytes]], now: datetime, held: dict[str, Guard],
                outcome: Outcome, changes: dict[str, Change]) -> None:
    for entry, requests in batch.requests:
        for request in requests:
            if request.run_id in changes or existing.get(request.run_id):
                continue
            if request.guard and request.error is None:
                if not _may_start(request, request.guard, held, outcome):
                    continue
                held[request.guard] = Guard(request.run_id, held.get(request.guard, Guard()).queued)
                outcome.take[request.guard] = request.run_id
            change = changes[request.run_id] = _create(request, now)
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


def _create(request: RunRequest, now: datetime) -> Change:
    if request.error is not None or request.params is None:
        return failed_run(request.run_id, request.spec, request.rule, request.event, request.error or "", now)
    return new_run(request.run_id, request.spec, request.rule, request.event, request.params, now)


def _count(changes: list[Change], metrics: MetricsBatch) -> None:
    for change in changes:
        run = change.run
        if change.created:
            metrics.inc(RUNS_STARTED, run.workflow)
        if change.finished:
            metrics.inc(RUNS_FINISHED, run.workflow, str(run.status))
            metrics.observe(RUN_DURATION, run.duration_s or 0.0, run.workflow, str(run.status))
        for task in change.started:
            if task.queued_at and task.started_at:
                metrics.observe(TASK_WAIT, (task.started_at - task.queued_at).total_seconds(), task.queue)
        for task in change.finished_tasks:
            metrics.inc(TASKS_FINISHED, run.workflow, task.task, str(task.state))
            metrics.observe(TASK_DURATION, task.duration_s or 0.0, run.workflow, task.task, str(task.state))
