"""⑧ Steering runs: cancel, retry, rerun. Pure, like advance.py; the engine applies them as it applies
task records, so a run is only ever written by the engine's transaction.

    cancel   every unfinished task is cancelled (running attempts are told to stop through the run's
             cancel marker; their late reports are ignored) and the run ends `cancelled`
    retry    a failed or cancelled run runs again: its failed, cancelled and skipped tasks go back to
             pending (keeping the history of their attempts) and what is ready is dispatched
    rerun    a new run (a new id, `rerun_of` the old one) with the same workflow version, parameters and
             event; with `from_node`, the tasks that do not depend on that task keep their results
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from ..errors import WorkflowError
from .advance import Change, settle, skeleton
from .runs import TERMINAL_STATES, Run, RunStatus, TaskRun, TaskState, job_id
from .work import attempt_member

__all__ = ["cancel_run", "rerun", "rerun_id", "retry_run", "stop_run"]


def stop_run(change: Change, now: datetime, status: RunStatus, reason: str) -> None:
    """End a running run now with `status`: every unfinished task is cancelled with `reason`."""
    run = change.run
    for task in run.tasks.values():
        if task.state in TERMINAL_STATES:
            continue
        if task.state in (TaskState.QUEUED, TaskState.RUNNING):
            change.done.add(attempt_member(run.id, task.node, task.attempt))
        if task.state is TaskState.QUEUED:
            change.withdrawn.append((task.queue, job_id(run.id, task.node, task.attempt)))
        task.state, task.error, task.finished_at, task.retry_at = TaskState.CANCELLED, reason, now, None
        change.tasks.add(task.node)
    run.status, run.error, run.finished_at = status, reason, now
    change.finished = change.cancelled = True


def cancel_run(change: Change, now: datetime, by: str = "") -> bool:
    """Cancel a running or queued run; False (nothing changes) when it has already finished."""
    if change.run.status not in (RunStatus.RUNNING, RunStatus.QUEUED):
        return False
    stop_run(change, now, RunStatus.CANCELLED, f"cancelled{f' by {by}' if by else ''}")
    return True


def _reopen(task: TaskRun) -> None:
    if task.state is not TaskState.SKIPPED:
        task.history.append(task.attempt_summary())
    task.state, task.error, task.error_type, task.logs = TaskState.PENDING, None, None, None
    task.queued_at = task.started_at = task.finished_at = task.worker = None


def retry_run(change: Change, now: datetime) -> bool:
    """Run a failed or cancelled run's unsuccessful tasks again; False when the run cannot be retried."""
    run = change.run
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        return False
    for task in run.tasks.values():
        if task.state in (TaskState.FAILED, TaskState.CANCELLED, TaskState.SKIPPED):
            if task.items is not None and task.parent is None:
                task.state, task.error, task.finished_at = TaskState.RUNNING, None, None  # its items are reopened
            else:
                _reopen(task)
            change.tasks.add(task.node)
    run.status, run.error, run.finished_at = RunStatus.RUNNING, None, None
    change.reopened = True
    settle(change, now)
    return True


def rerun_id(run_id: str, nonce: str) -> str:
    """The id of a rerun of `run_id`; the requester picks `nonce`, so asking twice is one rerun."""
    return hashlib.blake2b(f"{run_id}\x00rerun\x00{nonce}".encode(), digest_size=12).hexdigest()


def _downstream(run: Run, start: str) -> set[str]:
    below = {start}
    for node in run.spec.nodes:  # topological order: upstream first
        if any(up in below for up in node.upstream):
            below.add(node.name)
    return below


def rerun(old: Run, new_id: str, now: datetime, from_node: str | None = None) -> Change:
    """A new run repeating `old`; with `from_node`, results of tasks outside its downstream are reused."""
    if from_node is not None and from_node not in {n.name for n in old.spec.nodes}:
        raise WorkflowError(f"run {old.id} has no task {from_node!r} (tasks: "
                            f"{', '.join(n.name for n in old.spec.nodes)})")
    run = skeleton(new_id, old.spec, old.rule, old.event, old.params, now, old.event_data)
    run.rerun_of = old.id
    change = Change(run, created=True)
    if from_node is not None:
        redo = _downstream(old, from_node)
        for name, task in old.tasks.items():
            parent = task.parent or name
            if parent in redo or old.tasks[parent].state is not TaskState.SUCCEEDED:
                continue
            copy = TaskRun(node=task.node, task=task.task, queue=task.queue, state=TaskState.SUCCEEDED,
                           result=task.result, parent=task.parent, index=task.index, items=task.items,
                           started_at=task.started_at, finished_at=task.finished_at, worker=task.worker,
                           history=[{"reused_from": old.id, "attempt": task.attempt}])
            run.tasks[name] = copy
    settle(change, now)
    return change
