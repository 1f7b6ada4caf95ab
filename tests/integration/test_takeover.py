"""② Live engines take over a dead engine's pending entries at once (engine/takeover.py), on a real Redis:
never from an engine whose heartbeat is fresh, and the dead consumer leaves the group once it holds none."""

from __future__ import annotations

import time

import pytest
import redis

from executors.dispatch import RQDispatcher
from orchestrator.cli.wiring import load_project
from orchestrator.engine import Engine
from orchestrator.settings import Settings
from orchestrator.state import lua
from orchestrator.workflows.runs import RunStatus

from ..helpers import EXAMPLES, wait_for
from ..inproc import Stack

# the idle-based reclaim is out of the way: only the takeover can move an entry read a moment ago
TAKEOVER = {"engine_claim_idle_s": 3600.0, "engine_beat_s": 0.2, "engine_dead_after_s": 1.0}


@pytest.fixture
def stack(r: redis.Redis, settings: Settings) -> Stack:
    stack = Stack(r, Settings(**{**settings.model_dump(), **TAKEOVER}), load_project(EXAMPLES))
    stack.engine.maintain(force=True)  # the live engine beats
    return stack


def other_engine_reads(stack: Stack, name: str, beat_age_s: float | None) -> int:
    """Engine `name` reads what is there and stops before committing; its last beat was `beat_age_s` ago."""
    other = Engine(stack.r, stack.settings, stack.project, RQDispatcher(stack.r, stack.settings), consumer=name)
    read = len(other.consumer.read(block=False))
    if beat_age_s is not None:
        stack.r.zadd("orch:engines", {name: int((time.time() - beat_age_s) * 1000)})
    return read


def silent(r: redis.Redis, name: str, stack: Stack) -> None:
    """Wait until engine `name` has not read for longer than the dead-after time (Redis's idle time), while
    the live engine beats (as it does every engine_beat_s when it runs its loop)."""
    wait_for(lambda: all(c["idle"] > 1000 for c in r.xinfo_consumers("orch:events", "engine")
                         if c["name"].decode() == name), 10, "no read for longer than engine_dead_after_s")
    r.zadd("orch:engines", {stack.engine.consumer.consumer: int(time.time() * 1000)})


def consumers(r: redis.Redis, stream: str) -> set[str]:
    return {c["name"].decode() for c in r.xinfo_consumers(stream, "engine")}


def test_the_entries_of_an_engine_whose_heartbeat_stopped_are_taken_over_at_once(stack: Stack, r: redis.Redis) -> None:
    event_id = stack.emit("order.created", {"order_id": "T-1", "amount": 5}, source="/shop")
    assert other_engine_reads(stack, "dead", beat_age_s=30.0) == 1
    silent(r, "dead", stack)

    stack.engine.maintain(force=True)
    stack.drain()

    assert stack.run("process-new-orders", "/shop", event_id).status is RunStatus.SUCCEEDED
    assert r.zcard("orch:runs") == 1
    assert r.xpending("orch:events", "engine")["pending"] == 0
    assert "dead" not in consumers(r, "orch:events") | consumers(r, "orch:results"), "the dead consumer is forgotten"


def test_an_engine_that_never_beat_and_stopped_reading_is_dead_too(stack: Stack, r: redis.Redis) -> None:
    stack.emit("order.created", {"order_id": "T-2", "amount": 5}, source="/shop")
    assert other_engine_reads(stack, "crashed-at-start", beat_age_s=None) == 1
    silent(r, "crashed-at-start", stack)

    stack.engine.maintain(force=True)
    stack.drain()
    assert r.zcard("orch:runs:status:succeeded") == 1
    assert "crashed-at-start" not in consumers(r, "orch:events")


def test_nothing_is_taken_from_an_engine_whose_heartbeat_is_fresh(stack: Stack, r: redis.Redis) -> None:
    stack.emit("order.created", {"order_id": "T-3", "amount": 5}, source="/shop")
    stack.emit("order.created", {"order_id": "T-4", "amount": 5}, source="/shop")
    assert other_engine_reads(stack, "busy", beat_age_s=0.0) == 2

    stack.engine.maintain(force=True)

    assert len(r.xpending_range("orch:events", "engine", "-", "+", 10, consumername="busy")) == 2
    assert r.zcard("orch:runs") == 0
    assert "busy" in consumers(r, "orch:events")


def test_a_consumer_is_forgotten_only_when_it_holds_no_entry(stack: Stack, r: redis.Redis) -> None:
    stack.emit("order.created", {"order_id": "T-5", "amount": 5}, source="/shop")
    other_engine_reads(stack, "holder", beat_age_s=None)
    forget = lua.register(r, "forget_consumer")

    assert forget(keys=["orch:events"], args=["engine", "holder"]) == 0
    assert "holder" in consumers(r, "orch:events")
    r.xclaim("orch:events", "engine", "engine-test", 0, [e["message_id"] for e in
             r.xpending_range("orch:events", "engine", "-", "+", 10, consumername="holder")])
    assert forget(keys=["orch:events"], args=["engine", "holder"]) == 1
    assert "holder" not in consumers(r, "orch:events")


def test_an_entry_delivered_too_often_is_left_to_the_dead_letters_not_handed_on(stack: Stack, r: redis.Redis) -> None:
    stack.emit("order.created", {"order_id": "T-6", "amount": 5}, source="/shop")
    other_engine_reads(stack, "poisoned", beat_age_s=30.0)
    ids = [e["message_id"] for e in r.xpending_range("orch:events", "engine", "-", "+", 10, consumername="poisoned")]
    r.xclaim("orch:events", "engine", "poisoned", 0, ids, retrycount=stack.settings.engine_max_deliveries)

    stack.engine.maintain(force=True)

    assert len(r.xpending_range("orch:events", "engine", "-", "+", 10, consumername="poisoned")) == 1
    assert r.zcard("orch:runs") == 0
    assert "poisoned" in consumers(r, "orch:events"), "kept while it holds the entry"
