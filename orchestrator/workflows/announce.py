"""⑧ Runs announce what happens to them: the lifecycle events of a batch's changes. Pure.

    orch.run.started      a run started: created running, got its slot, or was retried
    orch.run.succeeded    a run ended, every task succeeded or was skipped
    orch.run.failed       a run ended with a failed task, or could not start (its parameters did not render)
    orch.run.cancelled    a run was cancelled
    orch.run.timed_out    a run's timeout fired (its status is `failed`)
    orch.task.failed      a task failed for good: its retries are spent, or its error is final; a mapped task
                          once, when it fails, naming its failed items (not once per item)

Each is a CloudEvent with source `/runs/<workflow>` (reserved: only the engine publishes there, so a rule
on it can trust it), subject the run id, and a stable id made of the run id and the transition
(`<run>.started.<n>`, `<run>.succeeded.<n>` where n counts the run's starts, `<run>.task.<node>.<attempt>`,
for a mapped task `<run>.task.<node>.s<n>`),
so publishing the same transition twice is one event (the dedup on source and id). Causation: `orchrun`
names the run, `orchtask` the task of `orch.task.failed`, `orchdepth` is the run's chain depth + 1
(events/chains.py), and `data.event` is the event that started the run.

`data`: run_id, workflow, version, rule, status, event, params (left out, with params_omitted, past
PARAMS_MAX_BYTES), starts, created_at; on an end also finished_at, duration_s and error ({type, message}
or null); on orch.task.failed also task ({node, task, queue, attempt, started_at, finished_at,
duration_s}; for a mapped task also items, failed_items (the first ITEMS_LISTED: node, index, attempt,
error) and failed_items_count) and the task's error. Every value is bounded, so an announcement stays
under MAX_BYTES.

Announcements are readable by every `events:read` token and outlive the run's retention, so an error is
only its type and its headline (the first line; for a bare traceback, its last line, the exception):
never a traceback. Parameters are kept (rules chain on `data.params`).

A run written before `starts` was kept counts as started once when any of its tasks ran (`Run.begun`),
so such a run that ends now announces `<run>.failed.1` with its task's error, not `InvalidParams`.

A run recorded instead of started because its chain was too deep (`Change.cut`) announces nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ..events.causation import RUN_ATTRIBUTE, TASK_ATTRIBUTE
from ..events.chains import DEPTH_ATTRIBUTE
from ..events.envelope import INT32_MAX, Event
from ..events.sources import RUNS
from ..jsonutil import dumps
from .advance import Change
from .runs import Run, RunStatus, TaskRun, TaskState, iso_utc

__all__ = ["ITEMS_LISTED", "MAX_BYTES", "PARAMS_MAX_BYTES", "RUN_CANCELLED", "RUN_FAILED", "RUN_STARTED", "RUN_SUCCEEDED",
           "RUN_TIMED_OUT", "SOURCE_PREFIX", "TASK_FAILED", "TYPES", "announcements",
           "headline"]

RUN_STARTED = "orch.run.started"
RUN_SUCCEEDED = "orch.run.succeeded"
RUN_FAILED = "orch.run.failed"
RUN_CANCELLED = "orch.run.cancelled"
RUN_TIMED_OUT = "orch.run.timed_out"
TASK_FAILED = "orch.task.failed"
TYPES = (RUN_STARTED, RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED, RUN_TIMED_OUT, TASK_FAILED)

SOURCE_PREFIX = RUNS
PARAMS_MAX_BYTES = 16 * 1024
MESSAGE_MAX_CHARS = 2000
ITEM_MESSAGE_MAX_CHARS = 500
ITEMS_LISTED = 10
MAX_BYTES = 64 * 1024  # what an announcement never exceeds (names and ids are bounded where they are made)

_ENDS = {RunStatus.SUCCEEDED: RUN_SUCCEEDED, RunStatus.FAILED: RUN_FAILED, RunStatus.CANCELLED: RUN_CANCELLED}


def announcements(changes: Iterable[Change], now: datetime) -> list[Event]:
    """The lifecycle events of a batch's changes, in order: per run, started, failed tasks, then its end."""
    out: list[Event] = []
    for change in changes:
        if change.cut:
            continue
        run = change.run
        if change.began:
            out.append(_event(run, RUN_STARTED, f"{run.id}.started.{run.begun}", now, _run_data(run)))
        for task in change.finished_tasks:
            if task.state is TaskState.FAILED and task.parent is None:  # an item's failure is its mapped task's
                out.append(_task_failed(run, task, now))
        if change.finished:
            kind = RUN_TIMED_OUT if change.timed_out else _ENDS.get(run.status, RUN_FAILED)
            end = run.finished_at or now
            data = {**_run_data(run), "finished_at": iso_utc(end), "duration_s": run.duration_s,
                    "error": _run_error(change) if run.status is not RunStatus.SUCCEEDED else None}
            out.append(_event(run, kind, f"{run.id}.{kind.rsplit('.', 1)[1]}.{run.begun}", end, data))
    return out


def _event(run: Run, kind: str, event_id: str, time: datetime, data: dict[str, Any], task: str | None = None) -> Event:
    extensions: dict[str, str | int | bool] = {RUN_ATTRIBUTE: run.id, DEPTH_ATTRIBUTE: min(run.depth + 1, INT32_MAX)}
    if task is not None:
        extensions[TASK_ATTRIBUTE] = task
    # built, not validated: every value is made here from the run (the engine's), bounded where it is made;
    # validating cost more than the rest of announcing (the unit tests check the result validates)
    return Event.model_construct(specversion="1.0", id=event_id[:256], source=f"{SOURCE_PREFIX}{run.workflow}"[:1024],
                                 type=kind, subject=run.id, time=time, datacontenttype="application/json",
                                 dataschema=None, data=data, data_base64=None, extensions=extensions)


def _run_data(run: Run) -> dict[str, Any]:
    data: dict[str, Any] = {
        "run_id": run.id, "workflow": run.workflow, "version": run.spec.digest, "rule": run.rule,
        "status": str(run.status), "event": {"id": run.event.id, "source": run.event.source, "type": run.event.type},
        "starts": run.begun, "created_at": iso_utc(run.created_at)}
    if len(dumps(run.params)) <= PARAMS_MAX_BYTES:
        data["params"] = run.params
    else:
        data["params_omitted"] = True
    if run.rerun_of:
        data["rerun_of"] = run.rerun_of
    return data


def _run_error(change: Change) -> dict[str, str]:
    run = change.run
    message = headline(run.error or str(run.status))
    if change.timed_out:
        return {"type": "RunTimeout", "message": message}
    if run.status is RunStatus.CANCELLED:
        return {"type": "Cancelled", "message": message}
    if run.never_started:
        return {"type": "InvalidParams", "message": message}
    failed = next((t for t in run.tasks.values() if t.state is TaskState.FAILED and t.parent is None), None)
    if failed is not None:
        message = headline(f"task {failed.node} failed: {headline(failed.error or 'failed')}")
    return {"type": _error_type(run, failed), "message": message}


def _error_type(run: Run, task: TaskRun | None) -> str:
    """A failed task's error type; for a mapped task, its first failed item's."""
    if task is not None and task.error_type is None and task.items is not None:
        task = next((c for c in run.items_of(task.node) if c.state is TaskState.FAILED), None)
    return _bounded((task.error_type if task else None) or "TaskFailed", 256)


def _task_failed(run: Run, task: TaskRun, now: datetime) -> Event:
    about: dict[str, Any] = {
        "node": task.node, "task": task.task, "queue": task.queue, "attempt": task.attempt,
        "started_at": iso_utc(task.started_at), "finished_at": iso_utc(task.finished_at), "duration_s": task.duration_s}
    event_id = f"{run.id}.task.{task.node}.{task.attempt}"
    if task.items is not None:  # a mapped task: announced once, naming its failed items
        failed = [c for c in run.items_of(task.node) if c.state is TaskState.FAILED]
        about |= {"items": task.items, "failed_items_count": len(failed), "failed_items": [
            {"node": c.node, "index": c.index, "attempt": c.attempt,
             "error": {"type": _bounded(c.error_type or "TaskFailed", 256),
                       "message": headline(c.error or "failed", ITEM_MESSAGE_MAX_CHARS)}}
            for c in failed[:ITEMS_LISTED]]}
        event_id = f"{run.id}.task.{task.node}.s{run.begun}"  # its own attempt stays 0; each start fails it once
    data = {**_run_data(run), "task": about,
            "error": {"type": _error_type(run, task), "message": headline(task.error or "failed")}}
    return _event(run, TASK_FAILED, event_id, task.finished_at or now, data, task=task.node)


_TRACEBACK = "Traceback (most recent call last):"


def headline(text: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    """An error's first line, bounded: never its traceback. An error that is a bare traceback (as
    `traceback.format_exception` writes it) is headed by its last unindented line, the exception."""
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0]
    if first == _TRACEBACK:
        first = next((line for line in reversed(lines) if not line[0].isspace() and line != _TRACEBACK), first)
    return _bounded(first, limit)


def _bounded(text: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
