"""A member of the worker registry (<p>:workers) that is not UTF-8 was written by no worker: the engine's
recovery removes it instead of ending on it, and the queue view reads it as a dead worker."""

from __future__ import annotations

import redis

from executors.fastpath import job_key
from executors.queues import RQQueueInspector
from executors.recovery import recover_dead_workers
from orchestrator.state.keys import Keys
from orchestrator.state.lua import Scripts

KEYS = Keys()
FORGED = b"\xff\xfe-worker"


def test_the_engines_recovery_removes_a_name_that_is_not_utf8(r: redis.Redis) -> None:
    r.zadd(KEYS.workers, {FORGED: 1, "gone-worker": 2})
    r.hset(job_key("job-1"), mapping={"status": "queued", "origin": "orch.default"})
    r.rpush(KEYS.worker_claimed("gone-worker"), "job-1")
    assert recover_dead_workers(r, KEYS, Scripts(r)) == ["job-1"], "the real dead worker is still released"
    assert r.zrange(KEYS.workers, 0, -1) == []


def test_the_queue_view_counts_it_as_a_dead_worker(r: redis.Redis) -> None:
    r.zadd(KEYS.workers, {FORGED: 1})
    assert RQQueueInspector(r, KEYS).live_workers(10).live == []
