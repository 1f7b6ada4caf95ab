"""⑤ RQDispatcher: each task attempt becomes one RQ job, queued inside the engine's transaction.

The job id is `<run>-<node>-<attempt>`, its only argument a JSON payload naming the task, so the job
is an ordinary RQ job (`rq info` and rq-dashboard see it) that calls nothing but the entry point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from rq import Queue

from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.workflows.advance import Dispatch

from .jobs import ENTRYPOINT, OrchJob
from .serializer import JSONSerializer

__all__ = ["RQDispatcher", "make_queue"]


def make_queue(client: redis.Redis, name: str) -> Queue:
    """An RQ queue using orch's job class and JSON serializer."""
    return Queue(name, connection=client, job_class=OrchJob, serializer=JSONSerializer)


class RQDispatcher:
    """Implements orchestrator.types.Dispatcher with RQ."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._redis = client
        self._keys = Keys(settings.key_prefix)
        self._settings = settings
        self._queues: dict[str, Queue] = {}

    def _queue(self, name: str) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = make_queue(self._redis, self._keys.queue_name(name))
            queue.get_redis_server_version()  # cached; RQ would otherwise ask while building the transaction
        return queue

    def dispatch(self, pipe: Any, dispatches: Sequence[Dispatch]) -> None:
        for item in dispatches:
            queue = self._queue(item.queue)
            payload = {"run": item.run_id, "workflow": item.workflow, "node": item.node, "task": item.task,
                       "attempt": item.attempt, "args": item.args, "kwargs": item.kwargs}
            job = queue.create_job(
                ENTRYPOINT,
                args=[payload],
                job_id=item.job_id,
                timeout=self._settings.task_timeout_s,
                result_ttl=self._settings.job_result_ttl_s,
                failure_ttl=self._settings.job_failure_ttl_s,
                description=f"{item.workflow}.{item.node} (run {item.run_id}, attempt {item.attempt})",
            )
            queue.enqueue_job(job, pipeline=pipe)
