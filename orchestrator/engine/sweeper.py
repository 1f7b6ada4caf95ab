"""⑧ Finding attempts that will never report: lost workers and lost jobs. Pure decisions, I/O by the caller.

Two ways an attempt can go silent, and how each is found:
  - its worker died (SIGKILL, OOM, a host lost): the attempt is in the engine's in-flight hash with the
    worker's name, and the worker's heartbeat key has expired (`lost_attempts`, every maintenance pass);
  - its job vanished before any worker started it (a flushed queue, a restored backup): the task has
    been `queued` for longer than `stall_s` and its job no longer exists (`stalled_attempts`, a slower
    scan of the running runs).
Either becomes a `failed` record (error_type WorkerLost or JobLost, retryable), applied like any other:
the task's retry policy decides whether it runs again, so no run stays `running` forever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from ..workflows.records import RecordKind, TaskRecord
from ..workflows.runs import Run, TaskState, job_id
from ..workflows.work import attempt_member

__all__ = ["lost_attempts", "stalled_attempts"]


def lost_attempts(inflight: Mapping[str, str], alive: set[str], now: datetime,
                  heartbeat_ttl_s: float) -> list[TaskRecord]:
    """A failed record for each in-flight attempt whose worker is not alive."""
    out = []
    for member, worker in inflight.items():
        if worker in alive:
            continue
        run_id, node, attempt = member.split("\x1f")
        error = (f"worker {worker} stopped sending heartbeats while running this attempt "
                 f"(silent for over {heartbeat_ttl_s:g}s): presumed dead")
        out.append(TaskRecord(RecordKind.FAILED, run_id, node, int(attempt), now.timestamp(), worker=worker,
                              error=error, error_type="WorkerLost"))
    return out


def stalled_attempts(runs: Iterable[Run], now: datetime, stall_s: float, inflight: Mapping[str, str],
                     missing_jobs: Callable[[list[str]], set[str]]) -> list[TaskRecord]:
    """A failed record for each attempt queued longer than `stall_s` whose job no longer exists."""
    waiting: dict[str, tuple[Run, str, int]] = {}
    cutoff = now - timedelta(seconds=stall_s)
    for run in runs:
        for task in run.tasks.values():
            if task.state is TaskState.QUEUED and task.queued_at is not None and task.queued_at < cutoff \
                    and attempt_member(run.id, task.node, task.attempt) not in inflight:
                waiting[job_id(run.id, task.node, task.attempt)] = (run, task.node, task.attempt)
    if not waiting:
        return []
    gone = missing_jobs(list(waiting))
    out = []
    for job in sorted(gone):
        run, node, attempt = waiting[job]
        out.append(TaskRecord(RecordKind.FAILED, run.id, node, attempt, now.timestamp(), error_type="JobLost",
                              error=f"its job {job} disappeared before any worker started it "
                                    f"(queued for over {stall_s:g}s)"))
    return out
