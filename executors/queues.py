"""Queue depths for the `orch_queue_jobs` metric, read without side effects (no registry cleanup, no recovery).

The reading itself is the core's (orchestrator/catalog/fleet.py: `queues_view`, `workers_view`), shared
with `orch workers`, GET /workers and the UI; this class adapts it to orchestrator.metrics.QueueInspector.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import redis

from orchestrator.catalog.fleet import queue_names, queues_view, workers_view
from orchestrator.state.keys import Keys

__all__ = ["RQQueueInspector"]


class RQQueueInspector:
    """Implements orchestrator.metrics.QueueInspector for RQ; also lists orch's workers."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def queue_names(self) -> list[str]:
        return queue_names(self._redis, self._keys)

    def queue_depths(self) -> Iterator[tuple[str, str, int]]:
        for row in self.queues():
            for state in ("queued", "started", "failed"):
                yield row["queue"], state, row[state]

    def queues(self) -> list[dict[str, Any]]:
        """Per orch queue: jobs waiting, started, failed, the head job's age, tasks finished lately."""
        return queues_view(self._redis, self._keys, datetime.now(UTC))

    def workers(self) -> list[dict[str, Any]]:
        """Every registered worker: its heartbeat, the task it runs, the jobs it holds, and `alive`."""
        return workers_view(self._redis, self._keys, datetime.now(UTC))
