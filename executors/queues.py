"""Queue depths and workers for the metrics and for `orch workers`, read without side effects (no registry
cleanup, no recovery).

The reading itself is the core's (orchestrator/catalog/fleet.py: `queues_view`, `workers_view`), shared
with `orch workers`, GET /workers and the UI; this class adapts it to
orchestrator.metrics_gauges.QueueInspector (`queue_stats` and `live_workers` feed the queue and worker
gauges).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis

from orchestrator.catalog.fleet import queue_names, queues_view, workers_view
from orchestrator.metrics_gauges import QueueStats, WorkerBeat, Workers
from orchestrator.state.keys import Keys

__all__ = ["RQQueueInspector"]


class RQQueueInspector:
    """Implements orchestrator.metrics_gauges.QueueInspector for RQ; also lists orch's workers."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def queue_names(self) -> list[str]:
        return queue_names(self._redis, self._keys)

    def queue_stats(self) -> list[QueueStats]:
        """Every orch queue's depths, and when the job at its head was enqueued. Workers take jobs from the
        head (LMOVE LEFT) and hand jobs back to it, so the head has waited longest."""
        return [QueueStats(row["queue"], row["queued"], row["started"], row["failed"],
                           _epoch_s(row["oldest_enqueued_at"])) for row in self.queues()]

    def live_workers(self, limit: int) -> Workers:
        """The live workers among the `limit` most recently seen (their heartbeat key is still there),
        and the newest heartbeat of any registered worker."""
        entries = self._redis.zrevrange(self._keys.workers, 0, limit - 1, withscores=True)
        pipe = self._redis.pipeline(transaction=False)
        for raw, _ in entries:  # a name that is not UTF-8 is no worker's (the engine removes it): a dead one
            pipe.hmget(self._keys.worker(raw.decode(errors="replace")), ["state", "job", "queues"])
        live = []
        for state, job, queues in pipe.execute():
            if state is None:  # expired: presumed dead
                continue
            live.append(WorkerBeat(state.decode(errors="replace"), state == b"busy" or bool(job),
                                   tuple(q for q in (queues or b"").decode(errors="replace").split(",") if q)))
        return Workers(live, float(entries[0][1]) / 1000 if entries else 0.0)

    def queues(self) -> list[dict[str, Any]]:
        """Per orch queue: jobs waiting, started, failed, the head job's age, tasks finished lately."""
        return queues_view(self._redis, self._keys, datetime.now(UTC))

    def workers(self) -> list[dict[str, Any]]:
        """Every registered worker: its heartbeat, the task it runs, the jobs it holds, and `alive`."""
        return workers_view(self._redis, self._keys, datetime.now(UTC))


def _epoch_s(stamp: str | None) -> float | None:
    """An ISO time from queues_view as epoch seconds; None when nothing waits."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None
