"""③ The engine's round trips for one event, counted by Redis itself (INFO `total_reads_processed`): the
idle latency from an event to its task being queued is mostly round trips, so each one is accounted for."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from executors.dispatch import RQDispatcher
from orchestrator import Client
from orchestrator.cli.wiring import load_project
from orchestrator.engine import Engine
from orchestrator.settings import Settings
from orchestrator.state import lua

from ..projects import make_project
from .test_maintenance import CHAIN, cost


@pytest.fixture
def engine(r: redis.Redis, redis_url: str, tmp_path: Path) -> Engine:
    project = load_project(make_project(tmp_path, rules="rules:\n  - {name: r, type: t.x, workflow: chain}\n",
                                        workflows=CHAIN))
    settings = Settings(redis_url=redis_url, project=project.root)
    engine = Engine(r, settings, project, RQDispatcher(r, settings), consumer="engine-rt")
    engine.consumer.ensure_groups()
    engine.reload.check()
    return engine


def test_an_event_is_read_planned_and_committed_in_four_round_trips(engine: Engine, r: redis.Redis,
        redis_url: str) -> None:
    with Client(settings=Settings(redis_url=redis_url)) as client:
        client.emit("t.x", {"value": 1}, source="/rt")  # the first: scripts loaded, first-time writes
        while engine.step(block=False):
            pass
        client.emit("t.x", {"value": 2}, source="/rt")
        step = cost(r, lambda: engine.step(block=False))
        # 1 the due timers; 2 the read of the streams; 3 the waiters of its type, ahead of the WATCH and the
        # read of its run and the rule-set version; 4 MULTI ... EXEC (the run, its job, the XACK, an announcement)
        assert step.round_trips == 4, step
        assert step.calls.get("exec") == 1 and step.calls.get("watch") == 1, step.calls
        announced = cost(r, lambda: engine.step(block=False))  # its orch.run.started, which no rule hears
        # the timers, the read, and one script call that acknowledges it (no WATCH, no MULTI)
        assert announced.round_trips == 3 and "exec" not in announced.calls, announced
        assert r.zcard(engine.keys.runs) == 2
        assert r.xpending(engine.keys.events, "engine")["pending"] == 0


def test_an_announcement_a_step_waits_for_gets_the_whole_commit(engine: Engine, r: redis.Redis,
        redis_url: str) -> None:
    with Client(settings=Settings(redis_url=redis_url)) as client:
        client.emit("t.x", {"value": 1}, source="/rt")
    engine.step(block=False)  # the run; its orch.run.started is next in the stream
    r.hset(engine.keys.waits("orch.run.started"), "another-run/w/1", "{}")  # a waiter of that type
    announced = cost(r, lambda: engine.step(block=False))
    assert announced.calls.get("exec") == 1 and announced.calls.get("watch") == 1, announced.calls
    assert r.xpending(engine.keys.events, "engine")["pending"] == 0


def test_the_acknowledging_script_does_nothing_when_the_rules_changed_or_a_step_waits(r: redis.Redis) -> None:
    ack = lua.register(r, "ack_settled")
    r.xgroup_create("as:events", "engine", id="0", mkstream=True)
    ids = [r.xadd("as:events", {"e": "{}"}).decode() for _ in range(3)]
    r.xreadgroup("engine", "c", {"as:events": ">"})
    keys = ["as:ruleset", "as:events", "as:waits:t"]
    r.set("as:ruleset", "v2")
    assert ack(keys=keys, args=["v1", "engine", *ids]) == -1  # planned under v1: the commit replans
    r.set("as:ruleset", "v1")
    r.hset("as:waits:t", "run/w/1", "{}")
    assert ack(keys=keys, args=["v1", "engine", *ids]) == -1  # a step waits for the type: the commit matches
    assert r.xpending("as:events", "engine")["pending"] == 3
    r.delete("as:waits:t", "as:ruleset")  # no version published yet counts as this one, as the commit's check
    assert ack(keys=keys, args=["v1", "engine", *ids]) == 3
    assert r.xpending("as:events", "engine")["pending"] == 0
    r.delete("as:events")


def test_the_acknowledging_script_takes_more_ids_than_lua_can_unpack_at_once(r: redis.Redis) -> None:
    # engine_batch_size has no upper bound; Lua's unpack stops near 8,000 values
    ack = lua.register(r, "ack_settled")
    r.xgroup_create("as:big", "engine", id="0", mkstream=True)
    pipe = r.pipeline(transaction=False)
    for _ in range(8500):
        pipe.xadd("as:big", {"e": "{}"})
    ids = [i.decode() for i in pipe.execute()]
    r.xreadgroup("engine", "c", {"as:big": ">"}, count=9000)
    assert ack(keys=["as:ruleset-none", "as:big"], args=["v1", "engine", *ids]) == 8500
    assert r.xpending("as:big", "engine")["pending"] == 0
    r.delete("as:big")
