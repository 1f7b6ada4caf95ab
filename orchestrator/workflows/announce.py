"""⑧ Runs announce what happens to them: the lifecycle events of a batch's changes. Pure.

    orch.run.started      a run started: created running, got its slot, or was retried
    orch.run.succeeded    a run ended, every task succeeded or was skipped
    orch.run.failed       a run ended with a failed task, or could not start (its parameters did not render)
    orch.run.cancelled    a run was cancelled
    orch.run.timed_out    a run's timeout fired (its status is `failed`)
    orch.task.failed      a task failed for good: its retries are spent, or its error is final

Each is a CloudEvent with source `/runs/<workflow>` (reserved: only the engine publishes there, so a rule
on it can trust it), subject the run id, and a stable id made of the run id and the transition
(`<run>.started.<n>`, `<run>.succeeded.<n>` where n counts the run's starts, `<run>.task.<node>.<attempt>`),
so publishing the same transition twice is one event (the dedup on source and id). Causation: `orchrun`
names the run, `orchtask` the task of `orch.task.failed`, `orchdepth` is the run's chain depth + 1
(events/chains.py), and `data.event` is the event that started the run.

`data`: run_id, workflow, version, rule, status, event, params (left out, with params_omitted, past
PARAMS_MAX_BYTES), starts, created_at; on an end also finished_at, duration_s and error ({type, message}
or null); on orch.task.failed also task ({node, task, queue, attempt, started_at, finished_at,
duration_s}) and the task's error. Every value is bounded, so an announcement stays under MAX_BYTES.

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

__all__ = ["MAX_BYTES", "PARAMS_MAX_BYTES", "RUN_CANCELLED", "RUN_FAILED", "RUN_STARTED", "RUN_SUCCEEDED",
           "RUN_TIMED_OUT", "SOURCE_PREFIX", "TASK_FAILED", "TYPES", "announcements"]

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
            out.append(_event(run, RUN_STARTED, f"{run.id}.started.{run.starts}", now, _run_data(run)))
        for task in change.finished_tasks:
            if task.state is TaskState.FAILED:
                out.append(_task_failed(run, task, now))
        if change.finished:
            kind = RUN_TIMED_OUT if change.timed_out else _ENDS.get(run.status, RUN_FAILED)
            end = run.finished_at or now
            data = {**_run_data(run), "finished_at": iso_utc(end), "duration_s": run.duration_s,
                    "error": _run_error(change) if run.status is not RunStatus.SUCCEEDED else None}
            out.append(_event(run, kind, f"{run.id}.{kind.rsplit('.', 1)[1]}.{run.starts}", end, data))
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
        "starts": run.starts, "created_at": iso_utc(run.created_at)}
    if len(dumps(run.params)) <= PARAMS_MAX_BYTES:
        data["params"] = run.params
    else:
        data["params_omitted"] = True
    if run.rerun_of:
        data["rerun_of"] = run.rerun_of
    return data


def _run_error(change: Change) -> dict[str, str]:
    run = change.run
    message = _bounded(run.error or str(run.status))
    if change.timed_out:
        return {"type": "RunTimeout", "message": message}
    if run.status is RunStatus.CANCELLED:
        return {"type": "Cancelled", "message": message}
    if not run.starts:
        return {"type": "InvalidParams", "message": message}
    failed = next((t for t in run.tasks.values() if t.state is TaskState.FAILED and t.parent is None), None)
    return {"type": _bounded((failed.error_type if failed else None) or "TaskFailed", 256), "message": message}


def _task_failed(run: Run, task: TaskRun, now: datetime) -> Event:
    data = {**_run_data(run), "task": {
        "node": task.node, "task": task.task, "queue": task.queue, "attempt": task.attempt,
        "started_at": iso_utc(task.started_at), "finished_at": iso_utc(task.finished_at), "duration_s": task.duration_s},
        "error": {"type": _bounded(task.error_type or "TaskFailed", 256), "message": _bounded(task.error or "failed")}}
    return _event(run, TASK_FAILED, f"{run.id}.task.{task.node}.{task.attempt}", task.finished_at or now, data,
                  task=task.node)


def _bounded(text: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
