"""⑧ Advancing runs: the pure core. Given a run and what happened, decide what to write and dispatch.

No Redis here: the engine reads runs, calls these functions, and commits the resulting `Change`s in one
transaction. The clock is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import TaskError
from .dag import blocked_nodes, ready_nodes
from .records import RecordKind, TaskRecord
from .runs import TERMINAL_STATES, EventRef, Run, RunStatus, TaskRun, TaskState, job_id
from .spec import WorkflowSpec, resolve

__all__ = ["Change", "Dispatch", "apply_record", "failed_run", "new_run"]


@dataclass(frozen=True)
class Dispatch:
    """One task attempt to hand to the executor."""

    run_id: str
    workflow: str
    node: str
    task: str
    attempt: int
    queue: str
    job_id: str
    args: list[Any]
    kwargs: dict[str, Any]


@dataclass
class Change:
    """What one batch did to one run: fields to write, work to dispatch, and facts for metrics."""

    run: Run
    created: bool = False
    tasks: set[str] = field(default_factory=set)
    dispatches: list[Dispatch] = field(default_factory=list)
    started: list[TaskRun] = field(default_factory=list)
    finished_tasks: list[TaskRun] = field(default_factory=list)
    finished: bool = False

    @property
    def dirty(self) -> bool:
        return self.created or bool(self.tasks) or self.finished


def _skeleton(run_id: str, spec: WorkflowSpec, rule: str, event: EventRef, params: dict[str, Any],
              now: datetime) -> Run:
    tasks = {n.name: TaskRun(node=n.name, task=n.task, queue=n.queue) for n in spec.nodes}
    return Run(id=run_id, workflow=spec.name, rule=rule, event=event, params=params, spec=spec,
               created_at=now, tasks=tasks)


def new_run(run_id: str, spec: WorkflowSpec, rule: str, event: EventRef, params: dict[str, Any],
            now: datetime) -> Change:
    """A new run with its first tasks dispatched."""
    change = Change(_skeleton(run_id, spec, rule, event, params, now), created=True)
    _settle(change, now)
    return change


def failed_run(run_id: str, spec: WorkflowSpec, rule: str, event: EventRef, error: str, now: datetime) -> Change:
    """A run that failed before any task could start (its parameters could not be rendered)."""
    run = _skeleton(run_id, spec, rule, event, {}, now)
    for task in run.tasks.values():
        task.state, task.error = TaskState.SKIPPED, "the run failed before it started"
    run.status, run.error, run.finished_at = RunStatus.FAILED, error, now
    return Change(run, created=True, finished=True)


def apply_record(change: Change, record: TaskRecord, now: datetime) -> bool:
    """Apply one worker record to the run; False when it is stale or a duplicate (then nothing changes)."""
    task = change.run.tasks.get(record.node)
    if task is None or task.attempt != record.attempt or task.state in TERMINAL_STATES:
        return False
    at = datetime.fromtimestamp(record.at_s, UTC)
    if record.kind is RecordKind.STARTED:
        if task.state is not TaskState.QUEUED:
            return False
        task.state, task.started_at, task.worker = TaskState.RUNNING, at, record.worker
        change.started.append(task)
    else:
        if task.state not in (TaskState.QUEUED, TaskState.RUNNING):
            return False
        task.worker = record.worker or task.worker
        task.finished_at = at
        if task.started_at is None and record.duration_s is not None:
            task.started_at = datetime.fromtimestamp(record.at_s - record.duration_s, UTC)
        if record.kind is RecordKind.SUCCEEDED:
            task.state, task.result = TaskState.SUCCEEDED, record.result
        else:
            task.state, task.error = TaskState.FAILED, record.error or "failed"
        change.finished_tasks.append(task)
        _settle(change, now)
    change.tasks.add(task.node)
    return True


def _settle(change: Change, now: datetime) -> None:
    """Dispatch what became ready, skip what can never run, and finish the run when nothing is left."""
    run = change.run
    progressed = True
    while progressed:
        progressed = False
        states = {name: t.state for name, t in run.tasks.items()}
        for name in ready_nodes(run.spec, states):
            _dispatch(change, run.tasks[name], now)
            progressed = progressed or run.tasks[name].state is TaskState.FAILED
        for name, upstream in blocked_nodes(run.spec, {n: t.state for n, t in run.tasks.items()}).items():
            task = run.tasks[name]
            reason = "failed" if run.tasks[upstream].state is TaskState.FAILED else "was skipped"
            task.state, task.error, task.finished_at = TaskState.SKIPPED, f"upstream task {upstream} {reason}", now
            change.tasks.add(name)
            progressed = True
    if run.status is RunStatus.RUNNING and all(t.state in TERMINAL_STATES for t in run.tasks.values()):
        _finish(change, now)


def _dispatch(change: Change, task: TaskRun, now: datetime) -> None:
    run = change.run
    node = run.spec.node(task.node)
    results = {name: t.result for name, t in run.tasks.items() if t.state is TaskState.SUCCEEDED}
    change.tasks.add(task.node)
    try:
        args = [resolve(t, run.params, results) for t in node.args]
        kwargs = {k: resolve(t, run.params, results) for k, t in node.kwargs.items()}
    except TaskError as exc:
        task.state, task.error, task.finished_at = TaskState.FAILED, f"cannot build the task's arguments: {exc}", now
        return
    task.attempt += 1
    task.state, task.queued_at = TaskState.QUEUED, now
    change.dispatches.append(Dispatch(run_id=run.id, workflow=run.workflow, node=task.node, task=task.task,
                                      attempt=task.attempt, queue=task.queue,
                                      job_id=job_id(run.id, task.node, task.attempt), args=args, kwargs=kwargs))


def _finish(change: Change, now: datetime) -> None:
    run = change.run
    failed = [t for t in run.tasks.values() if t.state is TaskState.FAILED]
    run.status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
    if failed:
        first = failed[0]
        summary = ((first.error or "").strip().splitlines() or ["no error recorded"])[0]
        run.error = f"task {first.node} failed: {summary}"
    run.finished_at = now
    change.finished = True
