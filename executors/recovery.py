"""Handing back the jobs of dead workers (RQDispatcher.recover, pools, workers taking over a name).

A fast-path worker moves each job id it takes into `<p>:worker:<name>:claimed` and removes it when the
job ends, so the ids of a dead worker are all in that list. For every worker in `<p>:workers` whose
heartbeat key is gone, release.lua (atomically, per worker):

- puts every job the worker had claimed but not started back at the front of its queue: it never ran,
  so nothing is retried or duplicated; it simply runs on another worker;
- marks a job it had started as failed in RQ and appends a `failed` record (error_type `WorkerLost`)
  for its attempt, in the same script (from the job's `meta`: no window in which the job is failed
  and its record not yet written): the task may have run partly, and it is the engine's to retry
  under the task's policy (a new attempt, a new job). The engine also sees the loss itself (the attempt's worker has no
  heartbeat); whichever it applies first decides, the other is a report about a finished attempt, which
  it ignores. The old job is never re-run, so a superseded attempt cannot run twice through recovery,
  and an attempt whose `started` record never made it (killed in between) is still retried.

Bound: a job claimed by a worker that dies is back in its queue within `worker_heartbeat_ttl_s` (the
key expires) + `engine_maintenance_interval_s` (the engine calls recover()); sooner when a pool sees its
child exit (it releases the child at once) or the worker itself stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import redis

from orchestrator.state.keys import Keys
from orchestrator.state.lua import Scripts
from orchestrator.workflows.records import RecordKind, TaskRecord

from .fastpath import release

__all__ = ["LOST", "recover_dead_workers", "release_worker", "report_failed"]

log = logging.getLogger(__name__)

LOST = "WorkerLost"  # error_type of attempts whose worker died under them


def recover_dead_workers(client: redis.Redis, keys: Keys, scripts: Scripts) -> list[str]:
    """Release every registered worker whose heartbeat is gone; the ids of the jobs put back in queues."""
    names = []
    for raw in client.zrange(keys.workers, 0, -1):
        try:
            names.append(raw.decode())
        except UnicodeDecodeError:  # no worker registers such a name (a forgery): gone, or it would end the engine
            log.warning("%r in %s is not a worker name (not UTF-8); removed", raw, keys.workers)
            client.zrem(keys.workers, raw)
    if not names:
        return []
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.exists(keys.worker(name))
    alive = pipe.execute()
    requeued: list[str] = []
    for name, is_alive in zip(names, alive, strict=True):
        if is_alive:
            continue
        reason = f"worker {name} stopped heartbeating while running this task (worker lost)"
        ids, failed = release(client, scripts, keys, name, "dead", reason, LOST)
        if ids or failed:
            log.warning("worker %s is gone: %d job(s) back in their queues, %d started job(s) reported failed",
                        name, len(ids), len(failed))
        requeued += ids
    return requeued


def release_worker(client: redis.Redis, keys: Keys, scripts: Scripts, name: str, reason: str, *,
                   error_type: str = LOST) -> list[str]:
    """Release a worker known to be dead (or itself, leaving): its started jobs fail, with their records."""
    ids, _ = release(client, scripts, keys, name, "gone", reason, error_type)
    return ids


def report_failed(client: redis.Redis, keys: Keys, worker: str, attempts: Sequence[tuple[str, str, int]], reason: str,
                  error_type: str) -> None:
    """Append a `failed` record for each (run, node, attempt) whose runner could not report (a forked
    child that died)."""
    pipe = client.pipeline(transaction=False)
    for run, node, attempt in attempts:
        record = TaskRecord(RecordKind.FAILED, run=run, node=node, attempt=attempt, at_s=time.time(), worker=worker,
                            error=reason, error_type=error_type, duration_s=None)
        pipe.xadd(keys.results, record.to_fields())
    if attempts:
        pipe.execute()
