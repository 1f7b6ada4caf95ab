"""Steering requests from the CLI and the API: checked here, carried out by the engine.

A request is a ControlRecord on the results stream, so the engine applies it in the same transaction
as everything else that changes the run (the engine stays the only writer of runs). An approval
(`approve`) resolves a run's approval step that is waiting (workflows/waiting.py). `request` checks
that it makes sense now (clear errors for the caller) and returns what to wait for.

Two approvals sent close together both pass the check (the step still waits); the engine applies the
first and ignores the second. Each approval carries its own id (`request`), which the step's `via`
keeps: `wait_for` compares it and tells the second sender that its request was not applied, and who
approved the step (SteeringError, 409); an API caller compares `via.request` with the id it was given.
"""

from __future__ import annotations

import getpass
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from ..errors import OrchestratorError
from ..workflows.lifecycle import rerun_id
from ..workflows.records import ControlRecord
from ..workflows.runs import Run, RunStatus, TaskState
from ..workflows.waiting import WAIT_KIND
from .keys import Keys
from .store import RunStore

__all__ = ["SteeringError", "Steered", "request", "wait_for"]


class SteeringError(OrchestratorError):
    """The run cannot be steered that way now; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Steered:
    """An accepted request: the run it concerns (for a rerun: the new run)."""

    action: str
    run: str
    new_run: str | None = None
    finished_at: Any = None  # the run's end before the request: a retry has been applied once it changed
    task: str | None = None  # of an approval: its step ...
    request: str | None = None  # ... and the request's id, kept in the step's via once applied

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "run": self.run, **({"new_run": self.new_run} if self.new_run else {}),
                **({"task": self.task} if self.task else {}), **({"request": self.request} if self.request else {})}


def _by() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def request(client: redis.Redis, keys: Keys, store: RunStore, action: str, run_id: str, *,
            from_node: str | None = None, by: str | None = None, node: str | None = None,
            data: Any = None) -> Steered:
    """Check and send one steering request; SteeringError says why it cannot be done. An approval names
    its step (`node`) and may carry `data`, the step's result."""
    run = store.get(run_id)
    if run is None:
        raise SteeringError(f"no run {run_id!r} (it may have expired; list runs with `orch runs list`)", 404)
    _check(action, run, from_node)
    if action == "approve":
        _check_approval(run, node)
    new_run = rerun_id(run.id, uuid.uuid4().hex) if action == "rerun" else None
    request_id = uuid.uuid4().hex if action == "approve" else None
    record = ControlRecord(action=action, run=run.id, at_s=time.time(), by=by if by is not None else _by(),
                           new_run=new_run, from_node=from_node, node=node, data=data, request=request_id)
    client.xadd(keys.results, record.to_fields())
    return Steered(action, run.id, new_run, run.finished_at, node, request_id)


def _check(action: str, run: Run, from_node: str | None) -> None:
    if action in ("retry", "rerun") and run.never_started:
        raise SteeringError(f"run {run.id} never started: its parameters did not render or its chain was cut "
                            f"({run.error or 'no error recorded'}); fix the cause and send the event again")
    if action == "cancel" and run.status not in (RunStatus.RUNNING, RunStatus.QUEUED):
        raise SteeringError(f"run {run.id} has already finished ({run.status}); there is nothing to cancel")
    if action == "retry" and run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise SteeringError(f"run {run.id} is {run.status}: only failed or cancelled runs can be retried "
                            f"(`orch runs rerun {run.id}` starts it again from scratch)")
    if action == "rerun" and from_node is not None and from_node not in {n.name for n in run.spec.nodes}:
        raise SteeringError(f"run {run.id} has no task {from_node!r} (tasks: "
                            f"{', '.join(n.name for n in run.spec.nodes)})", 422)
    if action not in ("cancel", "retry", "rerun", "approve"):
        raise SteeringError(f"unknown action {action!r}", 422)


def _check_approval(run: Run, node: str | None) -> None:
    task = run.tasks.get(node or "")
    if task is None:
        raise SteeringError(f"run {run.id} has no task {node!r} (tasks: {', '.join(run.tasks)})", 404)
    spec = run.spec.node(task.parent or task.node)
    if spec.kind != WAIT_KIND or not (spec.wait or {}).get("approval"):
        raise SteeringError(f"task {task.node} of run {run.id} is not an approval step", 422)
    if run.status is not RunStatus.RUNNING or task.state is not TaskState.WAITING:
        why = ("its upstream tasks have not finished" if task.state is TaskState.PENDING and run.status is
               RunStatus.RUNNING else f"it is {task.state} (the run is {run.status})")
        raise SteeringError(f"task {task.node} of run {run.id} is not waiting for an approval: {why}")


def wait_for(store: RunStore, steered: Steered, timeout_s: float, finished: bool = False) -> Run | None:
    """The run once the engine applied the request (or, with `finished`, once it ended); None on timeout.
    SteeringError when the engine did not apply it: an approval whose step another approval (or its
    timeout, or the run's end) resolved first."""
    deadline = time.monotonic() + timeout_s
    target = steered.new_run or steered.run
    applied = False
    while time.monotonic() < deadline:
        run = store.get(target)
        applied = applied or (run is not None and _applied(steered, run))
        if run is not None and applied and (not finished or run.status not in (RunStatus.RUNNING, RunStatus.QUEUED)):
            return run
        time.sleep(0.05)
    return None


def _applied(steered: Steered, run: Run) -> bool:
    if steered.action == "cancel":
        return run.status not in (RunStatus.RUNNING, RunStatus.QUEUED)
    if steered.action == "retry":
        return bool(run.finished_at != steered.finished_at)
    if steered.action == "approve":
        task = run.tasks.get(steered.task or "")
        if task is not None and task.state is TaskState.WAITING:
            return False
        via = (task.via if task is not None else None) or {}
        if steered.request is None or via.get("request") == steered.request:
            return True
        raise SteeringError(f"the approval was not applied: {_resolved_by(run, steered.task or '', via)}")
    return True  # rerun: the new run exists


def _resolved_by(run: Run, node: str, via: dict[str, Any]) -> str:
    if via.get("approved_by"):
        return f"task {node} of run {run.id} was already approved by {via['approved_by']} at {via.get('at', '?')}"
    task = run.tasks.get(node)
    what = "timed out" if via.get("timed_out") else f"is {task.state if task else 'gone'}"
    return f"task {node} of run {run.id} {what} before the approval reached the engine (the run is {run.status})"
