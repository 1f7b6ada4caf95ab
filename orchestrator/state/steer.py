"""Steering requests from the CLI and the API: checked here, carried out by the engine.

A request is a ControlRecord on the results stream, so the engine applies it in the same transaction
as everything else that changes the run (the engine stays the only writer of runs). `request` checks
that it makes sense now (clear errors for the caller) and returns what to wait for.
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
from ..workflows.runs import Run, RunStatus
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

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "run": self.run, **({"new_run": self.new_run} if self.new_run else {})}


def _by() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def request(client: redis.Redis, keys: Keys, store: RunStore, action: str, run_id: str, *,
            from_node: str | None = None, by: str | None = None) -> Steered:
    """Check and send one steering request; SteeringError says why it cannot be done."""
    run = store.get(run_id)
    if run is None:
        raise SteeringError(f"no run {run_id!r} (it may have expired; list runs with `orch runs list`)", 404)
    _check(action, run, from_node)
    new_run = rerun_id(run.id, uuid.uuid4().hex) if action == "rerun" else None
    record = ControlRecord(action=action, run=run.id, at_s=time.time(), by=by if by is not None else _by(),
                           new_run=new_run, from_node=from_node)
    client.xadd(keys.results, record.to_fields())
    return Steered(action, run.id, new_run, run.finished_at)


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
    if action not in ("cancel", "retry", "rerun"):
        raise SteeringError(f"unknown action {action!r}", 422)


def wait_for(store: RunStore, steered: Steered, timeout_s: float, finished: bool = False) -> Run | None:
    """The run once the engine applied the request (or, with `finished`, once it ended); None on timeout."""
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
    return True  # rerun: the new run exists
