"""The engine writes its RQ jobs itself (RQDispatcher.dispatch, job_fields): each must be the job RQ's own
Queue.enqueue_job would have written, field for field, so `rq info`, rq-dashboard and RQ's Job.fetch see
ordinary jobs. Compared here against RQ's path on the installed RQ, in the same Redis."""

from __future__ import annotations

import re
import zlib

import redis
from rq import Queue

from executors.dispatch import RQDispatcher, make_queue
from executors.jobs import ENTRYPOINT, OrchJob
from orchestrator.settings import Settings
from orchestrator.workflows.work import Dispatch

_RQ_TIME = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def _dispatch(node: str, attempt: int = 1) -> Dispatch:
    return Dispatch(run_id="run1", workflow="wf", version="v1", node=node, task="t", attempt=attempt,
                    queue="default", job_id=f"run1-{node}-{attempt}", args=[{"x": "ü"}, 2], timeout_s=45)


def test_a_dispatched_job_is_the_hash_rq_would_write(r: redis.Redis, settings: Settings) -> None:
    dispatcher = RQDispatcher(r, settings)
    item = _dispatch("a")
    with r.pipeline() as pipe:
        dispatcher.dispatch(pipe, [item, _dispatch("b")])
        pipe.execute()
    queue = make_queue(r, dispatcher._queue("default").name)  # RQ's own path, for the same attempt
    theirs = queue.enqueue_job(queue.create_job(
        ENTRYPOINT, args=[item.payload()], job_id="rq-made", timeout=75, result_ttl=settings.job_result_ttl_s,
        failure_ttl=settings.job_failure_ttl_s, description="wf.a (run run1, attempt 1)",
        meta={"run": "run1", "node": "a", "attempt": 1}))
    ours, rqs = r.hgetall(OrchJob.key_for(item.job_id)), r.hgetall(theirs.key)
    assert ours.keys() == rqs.keys()
    for field in (b"created_at", b"enqueued_at"):
        assert _RQ_TIME.match(ours[field]), ours[field]
    assert zlib.decompress(ours.pop(b"data")) == zlib.decompress(rqs.pop(b"data"))
    assert {k: v for k, v in ours.items() if k not in (b"created_at", b"enqueued_at")} == \
        {k: v for k, v in rqs.items() if k not in (b"created_at", b"enqueued_at")}

    assert queue.get_job_ids() == ["run1-a-1", "run1-b-1", "rq-made"]  # pushed in order
    assert r.sismember(Queue.redis_queues_keys, queue.key)  # `rq info` lists the queue
    fetched = OrchJob.fetch("run1-a-1", connection=r, serializer=queue.serializer)
    assert fetched.get_status() == "queued" and fetched.args == [item.payload()] and fetched.func_name == ENTRYPOINT
    r.delete(queue.key, *[OrchJob.key_for(j) for j in ("run1-a-1", "run1-b-1", "rq-made")])
