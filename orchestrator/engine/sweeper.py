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
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..workflows.records import RecordKind, TaskRecord
from ..workflows.runs import Run, TaskState, job_id
from ..workflows.work import attempt_member

__all__ = ["Suspects", "lost_attempts", "stalled_attempts"]


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


@dataclass(frozen=True)
class _Suspect:
    record: TaskRecord
    horizon: str     # the results stream's last entry id when the worker's heartbeat was seen gone
    since_s: float   # monotonic


class Suspects:
    """Attempts whose worker's heartbeat was seen gone, held until every record their worker could have
    written before is applied: all results-stream entries up to the horizon seen with the heartbeat (a
    worker writes its result before it deregisters, and cannot beat once its key is gone). An attempt
    whose result was applied meanwhile leaves the in-flight hash and is dropped; the others are due, and
    fail as WorkerLost. `patience_s` bounds the wait should the stream never settle."""

    def __init__(self) -> None:
        self._held: dict[str, _Suspect] = {}

    def __len__(self) -> int:
        return len(self._held)

    def clear(self) -> None:
        self._held.clear()

    def note(self, records: Iterable[TaskRecord], horizon: str, now_s: float) -> None:
        for record in records:
            self._held.setdefault(attempt_member(record.run, record.node, record.attempt),
                                  _Suspect(record, horizon, now_s))

    def due(self, inflight: Mapping[str, str], settled: Callable[[str], bool], now_s: float,
            patience_s: float) -> list[TaskRecord]:
        """The suspects to fail now (kept until `forget`: a failed commit leaves them due); those no longer
        in flight are forgotten (their result came)."""
        self._held = {m: s for m, s in self._held.items() if inflight.get(m) == s.record.worker}
        return [s.record for s in self._held.values() if now_s - s.since_s >= patience_s or settled(s.horizon)]

    def forget(self, records: Iterable[TaskRecord]) -> None:
        """Failed, and committed: no longer suspects."""
        for record in records:
            self._held.pop(attempt_member(record.run, record.node, record.attempt), None)


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
