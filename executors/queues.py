"""Queue depths and workers, read without side effects (no registry cleanup, no recovery).

`queue_stats` and `live_workers` feed the queue and worker gauges (orchestrator/metrics_gauges.py);
`queues` and `workers` feed `orch workers`.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.utils import utcparse

from orchestrator.metrics_gauges import QueueStats, WorkerBeat, Workers
from orchestrator.state.keys import Keys

from .dispatch import make_queue
from .fastpath import job_key, queue_key

__all__ = ["RQQueueInspector"]

_INT_FIELDS = ("pid", "attempt", "jobs_done", "jobs_failed")
_FLOAT_FIELDS = ("started_at", "heartbeat_at", "job_started_at", "job_timeout_s")


class RQQueueInspector:
    """Implements orchestrator.metrics_gauges.QueueInspector for RQ; also lists orch's workers."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._prefix = keys.queue_name("")

    def queue_names(self) -> list[str]:
        names = []
        for raw in self._redis.smembers("rq:queues"):
            key = raw.decode()
            name = key.removeprefix("rq:queue:")
            if name.startswith(self._prefix):
                names.append(name)
        return sorted(names)

    def queue_stats(self) -> list[QueueStats]:
        """Every orch queue's depths, and when the job at its head was enqueued. Workers take jobs from the
        head (LMOVE LEFT) and hand jobs back to it, so the head has waited longest."""
        rows = self.queues()
        pipe = self._redis.pipeline(transaction=False)
        for row in rows:
            pipe.lindex(queue_key(self._prefix + row["queue"]), 0)
        heads = pipe.execute()
        for head in heads:
            if head is not None:
                pipe.hget(job_key(head.decode()), "enqueued_at")
        stamps = iter(pipe.execute())
        return [QueueStats(row["queue"], row["queued"], row["started"], row["failed"],
                           _epoch_s(next(stamps)) if head is not None else None)
                for row, head in zip(rows, heads, strict=True)]

    def live_workers(self, limit: int) -> Workers:
        """The live workers among the `limit` most recently seen (their heartbeat key is still there),
        and the newest heartbeat of any registered worker."""
        entries = self._redis.zrevrange(self._keys.workers, 0, limit - 1, withscores=True)
        pipe = self._redis.pipeline(transaction=False)
        for raw, _ in entries:
            pipe.hmget(self._keys.worker(raw.decode()), ["state", "job", "queues"])
        live = []
        for state, job, queues in pipe.execute():
            if state is None:  # expired: presumed dead
                continue
            live.append(WorkerBeat(state.decode(errors="replace"), state == b"busy" or bool(job),
                                   tuple(q for q in (queues or b"").decode(errors="replace").split(",") if q)))
        return Workers(live, float(entries[0][1]) / 1000 if entries else 0.0)

    def queues(self) -> list[dict[str, Any]]:
        """Per orch queue: jobs waiting, started (RQ's StartedJobRegistry) and failed (its FailedJobRegistry)."""
        names = self.queue_names()
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            queue = make_queue(self._redis, name)
            pipe.llen(queue.key)
            pipe.zcard(StartedJobRegistry(queue=queue).key)
            pipe.zcard(FailedJobRegistry(queue=queue).key)
        counts = pipe.execute()
        return [{"queue": name.removeprefix(self._prefix), "queued": int(counts[3 * i]),
                 "started": int(counts[3 * i + 1]), "failed": int(counts[3 * i + 2])} for i, name in enumerate(names)]

    def workers(self) -> list[dict[str, Any]]:
        """Every registered worker: its heartbeat fields, jobs it holds (`claimed`), and `alive`.

        A worker whose heartbeat expired stays listed (alive false, state "lost") until recover() has
        handed back what it held."""
        entries = self._redis.zrange(self._keys.workers, 0, -1, withscores=True)
        pipe = self._redis.pipeline(transaction=False)
        for raw, _ in entries:
            name = raw.decode()
            pipe.hgetall(self._keys.worker(name))
            pipe.llen(self._keys.worker_claimed(name))
        replies = pipe.execute()
        now = time.time()
        workers = []
        for i, (raw, score) in enumerate(entries):
            fields = {k.decode(): v.decode() for k, v in replies[2 * i].items()}
            workers.append(_worker_row(raw.decode(), fields, float(score) / 1000, int(replies[2 * i + 1]), now))
        return workers


def _epoch_s(stamp: bytes | None) -> float | None:
    """An RQ timestamp (`2024-05-01T12:00:00.123456Z`, UTC) as epoch seconds; None if absent or unreadable."""
    if not stamp:
        return None
    try:
        return utcparse(stamp.decode()).timestamp()
    except (UnicodeDecodeError, ValueError):
        return None


def _worker_row(name: str, fields: dict[str, str], last_beat_s: float, claimed: int, now: float) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "alive": bool(fields), "host": fields.get("host", ""),
                           "pid": None, "queues": [q for q in fields.get("queues", "").split(",") if q],
                           "engine": fields.get("engine", ""), "pool": fields.get("pool") or None,
                           "state": fields.get("state", "idle") if fields else "lost", "claimed": claimed}
    for field in _INT_FIELDS:
        row[field] = int(float(fields[field])) if fields.get(field) else None
    for field in _FLOAT_FIELDS:
        row[field] = float(fields[field]) if fields.get(field) else None
    row["jobs_done"] = row["jobs_done"] or 0
    row["jobs_failed"] = row["jobs_failed"] or 0
    row["heartbeat_at"] = row["heartbeat_at"] or last_beat_s
    row["heartbeat_age_s"] = round(max(0.0, now - row["heartbeat_at"]), 3)
    job = fields.get("job") or None
    row["current"] = None if not job else {
        "job": job, "run": fields.get("run") or None, "node": fields.get("node") or None,
        "task": fields.get("task") or None, "attempt": row.pop("attempt"),
        "started_at": row["job_started_at"], "running_s": round(max(0.0, now - (row["job_started_at"] or now)), 3),
        "timeout_s": row["job_timeout_s"]}
    for field in ("attempt", "job_started_at", "job_timeout_s"):
        row.pop(field, None)
    return row
