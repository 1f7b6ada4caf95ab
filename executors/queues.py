"""Queue depths of orch's RQ queues, read without side effects (no registry cleanup), for metrics."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from rq.registry import FailedJobRegistry, StartedJobRegistry

from orchestrator.state.keys import Keys

from .dispatch import make_queue

__all__ = ["RQQueueInspector"]


class RQQueueInspector:
    """Implements orchestrator.metrics.QueueInspector for RQ."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._prefix = keys.queue_name("")

    def queue_names(self) -> list[str]:
        names = []
        for raw in self._redis.smembers("rq:queues"):
            key = raw.decode()
            name = key.removeprefix("rq:queue:")
            if name.startswith(self._prefix):
                names.append(name)
        return sorted(names)

    def queue_depths(self) -> Iterator[tuple[str, str, int]]:
        for name in self.queue_names():
            queue = make_queue(self._redis, name)
            started = StartedJobRegistry(queue=queue).key
            failed = FailedJobRegistry(queue=queue).key
            pipe = self._redis.pipeline(transaction=False)
            pipe.llen(queue.key)
            pipe.zcard(started)
            pipe.zcard(failed)
            queued, running, failures = pipe.execute()
            short = name.removeprefix(self._prefix)
            yield short, "queued", int(queued)
            yield short, "started", int(running)
            yield short, "failed", int(failures)
