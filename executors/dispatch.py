"""⑤ RQDispatcher: each task attempt becomes one RQ job, queued inside the engine's transaction.

The job id is `<run>-<node>-<attempt>`, its only argument a JSON payload of identifiers and values
(`Dispatch.payload`: workflow, version, node, run, attempt, args), so the job is an ordinary RQ job
(`rq info` and rq-dashboard see it) that calls nothing but the entry point and says nothing about what
to run. Its `meta` repeats run, node and attempt in plain JSON (RQ compresses the payload), so that
release.lua can write the record of an attempt whose worker died in the same step that fails its job.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import redis
from rq import Queue
from rq.utils import now as utcnow
from rq.utils import utcformat

from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.workflows.advance import Dispatch

from .jobs import ENTRYPOINT, OrchJob
from .serializer import JSONSerializer

__all__ = ["RQDispatcher", "job_fields", "make_queue"]


def make_queue(client: redis.Redis, name: str) -> Queue:
    """An RQ queue using orch's job class and JSON serializer."""
    return Queue(name, connection=client, job_class=OrchJob, serializer=JSONSerializer)


def job_fields(origin: str, args: list[Any], now: str, *, timeout: int, result_ttl: int, failure_ttl: int,
               description: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The hash of a queued job calling ENTRYPOINT(*args), field for field what RQ's Job.to_dict gives one
    that Queue.enqueue_job has prepared (a test compares them on the installed RQ); `now` is RQ's time text."""
    return {"created_at": now, "data": zlib.compress(JSONSerializer.dumps((ENTRYPOINT, None, args, {}))),
            "success_callback_name": "", "failure_callback_name": "", "stopped_callback_name": "",
            "started_at": "", "ended_at": "", "last_heartbeat": "", "worker_name": "", "group_id": "",
            "origin": origin, "description": description, "enqueued_at": now, "timeout": timeout,
            "result_ttl": result_ttl, "failure_ttl": failure_ttl, "status": "queued",
            "meta": JSONSerializer.dumps(meta)}


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
        return queue

    def dispatch(self, pipe: Any, dispatches: Sequence[Dispatch]) -> None:
        """Queue each attempt as an RQ job: the hash RQ's `enqueue_job` writes (`job_fields`), then one
        RPUSH per queue for the batch, in order. RQ's own path (create_job + enqueue_job) cost a tenth of
        the engine's CPU per run and two commands more per job (HSET status, SADD rq:queues)."""
        now = utcformat(utcnow())
        pushed: dict[str, list[str]] = {}
        for item in dispatches:
            queue = self._queue(item.queue)
            timeout = item.timeout_s or self._settings.task_timeout_s
            pipe.hset(OrchJob.key_for(item.job_id), mapping=job_fields(
                queue.name, [item.payload()], now,
                timeout=int(timeout) + 30,  # the runner stops the task at timeout_s; RQ's limit is a backstop
                result_ttl=self._settings.job_result_ttl_s, failure_ttl=self._settings.job_failure_ttl_s,
                description=f"{item.workflow}.{item.node} (run {item.run_id}, attempt {item.attempt})",
                meta={"run": item.run_id, "node": item.node, "attempt": item.attempt}))
            pushed.setdefault(queue.key, []).append(item.job_id)
        for key, job_ids in pushed.items():
            pipe.sadd(Queue.redis_queues_keys, key)  # what `rq info` lists queues by
            pipe.rpush(key, *job_ids)

    def withdraw(self, pipe: Any, jobs: Sequence[tuple[str, str]]) -> None:
        """Take (queue, job id) jobs of a cancelled run off their queues before a worker starts them."""
        for queue, job_id in jobs:
            pipe.lrem(self._queue(queue).key, 0, job_id)
            pipe.delete(OrchJob.key_for(job_id))

    def missing_jobs(self, job_ids: list[str]) -> set[str]:
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(OrchJob.key_for(job_id))
        return {j for j, exists in zip(job_ids, pipe.execute(), strict=True) if not exists}

    def recover(self) -> list[str]:
        """Hand back the jobs of workers whose heartbeat is gone (executors/recovery.py); their ids.

        Claimed-but-unstarted jobs go back to the front of their queues; started ones are marked failed
        and reported (WorkerLost) for the engine to retry. A job claimed by a dead worker is back in its
        queue within worker_heartbeat_ttl_s + the interval at which the engine calls this.
        """
        from orchestrator.state.lua import Scripts

        from .recovery import recover_dead_workers

        scripts: Scripts | None = getattr(self, "_scripts", None)
        if scripts is None:
            scripts = self._scripts = Scripts(self._redis)
        return recover_dead_workers(self._redis, self._keys, scripts)
