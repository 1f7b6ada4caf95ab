"""A worker of several queues waits with one BLMOVE thread per queue (executors/idle.py): what a waiter
takes is handed over, given back once when the worker no longer waits, and never ends the thread."""

from __future__ import annotations

import redis

from executors.fastpath import job_key, queue_key
from executors.idle import IdleWait
from orchestrator.state.keys import Keys
from orchestrator.state.lua import register

from ..helpers import wait_for

KEYS = Keys()
CLAIMED = KEYS.worker_claimed("w-idle")
A, B = queue_key("orch.a"), queue_key("orch.b")


def test_a_job_given_back_goes_to_the_front_of_its_queue_once(r: redis.Redis) -> None:
    """The worker found other work (disarmed) as a waiter took X. If the worker still holds X, X goes back to
    the front of its queue; if a resync handed the claimed list back first, X is in its queue already, and
    pushing it again would run it twice."""
    idle = IdleWait(r, [A, B], CLAIMED, KEYS, block_s=0.2)
    give_back = register(r, "give_back")
    r.rpush(A, "other")
    r.rpush(CLAIMED, "X")
    idle._deliver(r, give_back, A, b"X")  # the waiter's hand-off, with nobody waiting
    assert r.lrange(A, 0, -1) == [b"X", b"other"] and r.llen(CLAIMED) == 0

    r.delete(A)
    r.rpush(A, "X")  # release.lua put it back during a resync: the claimed list no longer holds it
    idle._deliver(r, give_back, A, b"X")
    assert r.lrange(A, 0, -1) == [b"X"], "queued once"


def test_a_waiter_drops_an_id_that_is_not_utf8_and_goes_on_waiting(r: redis.Redis) -> None:
    idle = IdleWait(r, [A, B], CLAIMED, KEYS, block_s=0.2)
    forged = b"\xff\xfe"
    r.hset(job_key("").encode() + forged, "origin", "orch.b")
    r.rpush(B, forged)
    try:
        assert idle.wait() == []  # the threads start; B's waiter drops the forged id (it ended the thread)
        wait_for(lambda: not r.exists(job_key("").encode() + forged), 10, "the forged id's hash to be dropped")
        r.rpush(B, "J")
        assert wait_for(lambda: idle.wait(), 10, "the next job from the same queue") == ["J"]
        assert r.lrange(CLAIMED, 0, -1) == [b"J"]
    finally:
        idle.close()
