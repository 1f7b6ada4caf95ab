"""Hold-back flow control (debounce, batch, throttle, rate_limit) under two engines sharing one Redis and one
explicit clock, with several keys interleaved: exact counts of runs started, events carried, records written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from executors.dispatch import RQDispatcher
from orchestrator import Client
from orchestrator.cli.wiring import load_project
from orchestrator.engine import Engine
from orchestrator.events.decisions import event_decisions
from orchestrator.flow.decide import hold_run_id, memo_keep_s
from orchestrator.metrics_gauges import live_gauges
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.workflows.runs import Run, derive_run_id
from tests.projects import make_project

WORKFLOWS = {"held": """
    from orchestrator import task, workflow

    @task
    def note(count: int, customer: str, first: str) -> int:
        return count

    @workflow
    def held(count: int, customer: str, first: str):
        note(count, customer, first)
"""}

RULES = """
    rules:
      - name: debounced
        type: cust.updated
        workflow: held
        params: {count: "{{ events | length }}", customer: "{{ data.customer }}", first: "{{ events[0].id }}"}
        debounce: {key: data.customer, period_s: 10, max_wait_s: 30}
      - name: batched
        type: cust.logged
        workflow: held
        params: {count: "{{ events | length }}", customer: "{{ data.customer }}", first: "{{ events[0].id }}"}
        batch: {key: data.customer, max_size: 3, timeout_s: 10}
      - name: throttled
        type: cust.called
        workflow: held
        params: {count: "{{ events | length }}", customer: "{{ data.customer }}", first: "{{ event.id }}"}
        throttle: {key: data.customer, limit: 1, period_s: 10, burst: 2}
      - name: limited
        type: cust.pinged
        workflow: held
        params: {count: "{{ events | length }}", customer: "{{ data.customer }}", first: "{{ event.id }}"}
        rate_limit: {key: data.customer, limit: 2, period_s: 10}
"""

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> None:
        self.now = T0 + timedelta(seconds=seconds)


class Pair:
    """Two engines (a, b) on one project, Redis and clock, reading two entries at a time so that they
    take turns on every burst of events."""

    def __init__(self, r: redis.Redis, tmp_path: Path, redis_url: str) -> None:
        root = make_project(tmp_path / "project", rules=RULES, workflows=WORKFLOWS)
        self.r, self.clock = r, Clock()
        self.settings = Settings(redis_url=redis_url, project=root, engine_batch_size=2)
        self.project = load_project(root)
        self.engines = [Engine(r, self.settings, self.project, RQDispatcher(r, self.settings), consumer=name,
                               clock=self.clock) for name in ("a", "b")]
        for engine in self.engines:
            engine.consumer.ensure_groups()
        self.entries: dict[str, str] = {}  # event id -> stream entry id

    def emit(self, kind: str, customer: str, event_id: str) -> None:
        with Client(settings=self.settings, connection=self.r) as client:
            client.emit(kind, {"customer": customer}, id=event_id, source="/crm")
        self.entries[event_id] = self.r.xrevrange("orch:events", count=1)[0][0].decode()

    def settle(self) -> None:
        """Both engines step in turn until neither reads anything."""
        for _ in range(200):
            if not sum(engine.step(block=False) for engine in self.engines):
                return
        raise AssertionError("the engines did not settle")

    def release_at(self, seconds: float) -> int:
        """At `seconds` after T0: engine b releases the due holds, then both engines start their runs."""
        self.clock.at(seconds)
        released = self.engines[1]._flow.releases.release()
        self.settle()
        return released

    def runs(self, workflow: str = "held") -> list[Run]:
        ids = [i.decode() for i in self.r.zrange(f"orch:runs:workflow:{workflow}", 0, -1)]
        return [run for run in self.engines[0].store.get_many(ids) if run is not None]

    def by_rule(self, rule: str) -> list[Run]:
        return sorted((run for run in self.runs() if run.rule == rule), key=lambda run: run.created_at)

    def outcome(self, event_id: str, rule: str) -> dict[str, object]:
        record = event_decisions(self.r, Keys(), self.entries[event_id])
        assert record is not None and record["decisions"] is not None
        return next(d for d in record["decisions"]["rules"] if d["rule"] == rule)

    def records(self, rule: str) -> dict[str, int]:
        """How many events of the test have each outcome for `rule` in their decision records."""
        found: dict[str, int] = {}
        for entry_id in self.entries.values():
            record = event_decisions(self.r, Keys(), entry_id)
            assert record is not None and record["decisions"] is not None, "every event has its record"
            for decision in record["decisions"]["rules"]:
                if decision["rule"] == rule:
                    found[decision["outcome"]] = found.get(decision["outcome"], 0) + 1
        return found

    def holds_pending(self) -> float:
        (family,) = [f for f in live_gauges(self.r, Keys(), None, "test") if f.name == "orch_flow_holds_pending"]
        return float(family.samples[0].value)

    def counter(self, name: str) -> dict[str, int]:
        raw = self.r.hgetall(f"orch:metrics:{name}")
        return {k.decode().replace("\x1f", "/"): int(v) for k, v in raw.items()}


@pytest.fixture
def pair(r: redis.Redis, tmp_path: Path, redis_url: str) -> Pair:
    return Pair(r, tmp_path, redis_url)


def carried(run: Run) -> list[str]:
    return [e["event"]["id"] for e in run.events or []]


def test_debounce_one_run_per_quiet_key_carrying_every_event(pair: Pair) -> None:
    for event_id, customer in [("d1", "c1"), ("d2", "c2"), ("d3", "c1"), ("d4", "c3"), ("d5", "c2"), ("d6", "c1")]:
        pair.emit("cust.updated", customer, event_id)
    pair.settle()
    assert pair.runs() == []
    pair.clock.at(5)
    pair.emit("cust.updated", "c1", "d7")  # c1 is quiet again only at 15 s
    pair.settle()

    assert pair.release_at(9.9) == 0
    assert pair.holds_pending() == 3
    assert pair.release_at(10) == 2  # c2 and c3: quiet since 0 s
    assert {run.params["customer"]: carried(run) for run in pair.runs()} == {"c2": ["d2", "d5"], "c3": ["d4"]}
    assert pair.release_at(15) == 1
    runs = {run.params["customer"]: run for run in pair.runs()}
    assert len(runs) == 3
    c1 = runs["c1"]
    assert carried(c1) == ["d1", "d3", "d6", "d7"]
    assert c1.params == {"count": 4, "customer": "c1", "first": "d1"}
    assert c1.event.id == "d7", "a debounced run's `event` is the last one"
    assert c1.flow is not None and c1.flow["control"] == "debounce" and c1.flow["reason"] == "quiet"
    assert c1.to_dict()["events"][0] == {"entry_id": pair.entries["d1"], "id": "d1", "source": "/crm",
                                         "type": "cust.updated"}

    for event_id in ("d1", "d3", "d6", "d7"):
        decision = pair.outcome(event_id, "debounced")
        assert decision["outcome"] == "debounced" and decision["run"] == c1.id
    assert pair.records("debounced") == {"debounced": 7}
    assert pair.counter("orch_flow_events_total") == {"debounced/debounce/merged": 7}
    assert pair.counter("orch_flow_holds_released_total") == {"debounced/debounce/quiet": 3}
    assert pair.r.zcard("orch:flow:due") == 0 and not pair.r.keys("orch:flow:hold:*")
    memos = pair.r.keys("orch:flow:memo:*")  # every decision outlives its commit, for memo_keep_s at most
    assert len(memos) == 7 and all(0 < pair.r.ttl(m) <= memo_keep_s(pair.settings) for m in memos)


def test_debounce_max_wait_caps_a_key_that_never_goes_quiet(pair: Pair) -> None:
    for n, second in enumerate((0, 8, 16, 24, 32)):
        pair.clock.at(second)
        pair.emit("cust.updated", "c9", f"m{n}")
        pair.emit("cust.updated", "c8", f"o{n}")  # another key, interleaved, same rhythm
        pair.settle()
        if second == 24:
            assert pair.release_at(30) == 2  # both keys reached max_wait_s (30 s after their first event)
    assert sorted(carried(run) for run in pair.by_rule("debounced")) == [["m0", "m1", "m2", "m3"], ["o0", "o1", "o2", "o3"]]
    assert pair.release_at(42) == 2  # quiet 10 s after m4 and o4
    assert sorted(len(run.events or []) for run in pair.runs()) == [1, 1, 4, 4]
    assert pair.counter("orch_flow_holds_released_total") == {"debounced/debounce/max_wait": 2,
                                                             "debounced/debounce/quiet": 2}


def test_batch_full_batches_start_at_once_and_the_rest_at_the_timeout(pair: Pair) -> None:
    order = [("b1", "k1"), ("b2", "k1"), ("b3", "k2"), ("b4", "k1"), ("b5", "k1"), ("b6", "k2"), ("b7", "k1"),
             ("b8", "k1"), ("b9", "k1")]
    for event_id, key in order:
        pair.emit("cust.logged", key, event_id)
    pair.settle()
    full = pair.by_rule("batched")
    assert sorted(carried(run) for run in full) == [["b1", "b2", "b4"], ["b5", "b7", "b8"]]
    assert all(run.flow and run.flow["reason"] == "full" for run in full)
    assert full[0].event.id in ("b1", "b5"), "a batch's `event` is its first"

    assert pair.release_at(10) == 2
    batches = sorted(carried(run) for run in pair.by_rule("batched"))
    assert batches == [["b1", "b2", "b4"], ["b3", "b6"], ["b5", "b7", "b8"], ["b9"]]
    assert sum(len(b) for b in batches) == 9
    for run in pair.by_rule("batched"):
        assert run.id == hold_run_id("batched", str(run.flow and run.flow["hold"]))
        assert run.params["count"] == len(run.events or [])
    outcomes = [pair.outcome(event_id, "batched")["outcome"] for event_id, _ in order]
    assert outcomes == ["batched"] * 9
    assert pair.records("batched") == {"batched": 9}
    assert pair.counter("orch_flow_events_total") == {"batched/batch/merged": 9}
    assert pair.counter("orch_flow_holds_released_total") == {"batched/batch/full": 2, "batched/batch/timeout": 2}


def test_throttle_delays_excess_events_in_order_and_drops_none(pair: Pair) -> None:
    for event_id, key in [("t1", "x"), ("t2", "x"), ("u1", "y"), ("t3", "x"), ("t4", "x"), ("u2", "y")]:
        pair.emit("cust.called", key, event_id)
    pair.settle()
    started = {run.event.id for run in pair.by_rule("throttled")}
    assert started == {"t1", "t2", "u1", "u2"}, "burst 2: two of each key at once"
    assert pair.outcome("t3", "throttled")["outcome"] == "throttled"
    assert pair.outcome("t3", "throttled")["run"] == derive_run_id("throttled", "/crm", "t3")
    assert pair.outcome("t1", "throttled")["outcome"] == "matched"

    assert pair.release_at(9.999) == 0
    assert pair.release_at(10) == 1
    assert pair.release_at(19.999) == 0
    assert pair.release_at(20) == 1
    runs = pair.by_rule("throttled")
    assert [run.event.id for run in runs][-2:] == ["t3", "t4"]
    assert [run.created_at - T0 for run in runs][-2:] == [timedelta(seconds=10), timedelta(seconds=20)]
    assert len(runs) == 6
    assert pair.records("throttled") == {"matched": 4, "throttled": 2}
    assert pair.counter("orch_flow_events_total") == {"throttled/throttle/passed": 4,
                                                      "throttled/throttle/delayed": 2}
    assert pair.counter("orch_flow_holds_released_total") == {"throttled/throttle/throttle": 2}


def test_rate_limit_drops_excess_events_with_a_record(pair: Pair) -> None:
    for event_id, key in [("r1", "p"), ("r2", "p"), ("s1", "q"), ("r3", "p"), ("r4", "p"), ("r5", "p")]:
        pair.emit("cust.pinged", key, event_id)
    pair.settle()
    assert {run.event.id for run in pair.by_rule("limited")} == {"r1", "r2", "s1"}
    for event_id in ("r3", "r4", "r5"):
        decision = pair.outcome(event_id, "limited")
        assert decision["outcome"] == "rate_limited" and "run" not in decision
        assert "dropped" in str(decision["reason"])
    pair.clock.at(10)  # the window (0 s, 10 s] holds none of the first two any more
    pair.emit("cust.pinged", "p", "r6")
    pair.settle()
    assert {run.event.id for run in pair.by_rule("limited")} == {"r1", "r2", "s1", "r6"}
    assert pair.records("limited") == {"matched": 4, "rate_limited": 3}
    assert pair.counter("orch_flow_events_total") == {"limited/rate_limit/passed": 4,
                                                      "limited/rate_limit/dropped": 3}


def test_an_event_redelivered_after_a_crash_between_decide_and_commit_counts_once(pair: Pair) -> None:
    pair.emit("cust.updated", "c1", "z1")
    pair.emit("cust.called", "x", "z2")
    pair.emit("cust.called", "x", "z3")
    pair.emit("cust.called", "x", "z4")
    crashed = Engine(pair.r, pair.settings, pair.project, RQDispatcher(pair.r, pair.settings), consumer="crashed",
                     clock=pair.clock)
    crashed.consumer.ensure_groups()
    entries = crashed.consumer.read(block=False)
    crashed._plan(entries)  # the decisions are made ... and the engine dies before its commit
    assert pair.r.keys("orch:flow:memo:*")

    survivor = pair.engines[0]
    survivor._settings = Settings(**{**pair.settings.model_dump(), "engine_claim_idle_s": 0.0001})
    survivor.maintain(force=True)  # reclaims the dead consumer's entries and processes them
    pair.settle()
    assert pair.r.xpending("orch:events", "engine")["pending"] == 0
    assert pair.counter("orch_flow_events_total") == {"debounced/debounce/merged": 1,
                                                      "throttled/throttle/passed": 2, "throttled/throttle/delayed": 1}
    assert pair.release_at(10) == 2  # the debounce hold (one event) and z4, throttled once: at 10 s, not 20 s
    assert [carried(run) for run in pair.by_rule("debounced")] == [["z1"]]
    throttled = pair.by_rule("throttled")
    assert [run.event.id for run in throttled][-1] == "z4" and len(throttled) == 3
    memos = pair.r.keys("orch:flow:memo:*")  # kept past the commit, for a while (flow/decide.py memo_keep_s)
    assert len(memos) == 4 and all(0 < pair.r.ttl(m) <= memo_keep_s(pair.settings) for m in memos)


def test_the_example_debounce_and_batch_rules_give_their_tasks_every_event(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    from executors.worker import run_worker
    from tests.projects import copy_examples

    root = copy_examples(tmp_path / "examples")
    settings = Settings(redis_url=redis_url, project=root)
    project = load_project(root)
    clock = Clock()
    engine = Engine(r, settings, project, RQDispatcher(r, settings), consumer="one", clock=clock)
    engine.consumer.ensure_groups()
    with Client(settings=settings, connection=r) as client:
        for field in ("email", "phone", "email"):
            client.emit("profile.updated", {"customer_id": "c-7", "field": field}, source="/crm")
        for n in range(2):
            client.emit("activity.logged", {"account_id": "a-1", "action": f"click-{n}"}, source="/web")
    engine.step(block=False)
    clock.at(30)
    assert engine._flow.releases.release() == 2  # the debounce (quiet 30 s) and the batch (timeout 10 s)
    for _ in range(5):
        engine.step(block=False)
        run_worker(r, settings, project, project.queues, burst=True)
    (run_id,) = [i.decode() for i in r.zrange("orch:runs:workflow:sync_profile", 0, -1)]
    run = engine.store.get(run_id)
    assert run is not None and run.status.value == "succeeded"
    assert run.tasks["push_profile"].result == {"customer": "c-7", "edits_merged": 3, "fields": ["email", "phone"]}
    (batch_id,) = [i.decode() for i in r.zrange("orch:runs:workflow:record_activity", 0, -1)]
    batch = engine.store.get(batch_id)
    assert batch is not None and batch.tasks["write_rows"].result == 2


def test_an_event_whose_decision_fails_is_retried_not_lost_nor_counted_twice(pair: Pair) -> None:
    from orchestrator.flow.decide import digest

    broken = Keys().flow_state("debounced", digest("debounce", "c1"))
    pair.r.hset(broken, "not", "a hold id")  # WRONGTYPE for the debounce script
    pair.emit("cust.updated", "c1", "w1")
    pair.emit("cust.called", "x", "w2")
    pair.settle()
    assert pair.r.hget("orch:engine:errors", pair.entries["w1"]).decode().startswith(
        "flow control of rule debounced: ResponseError")
    assert pair.r.xpending("orch:events", "engine")["pending"] == 1
    assert pair.counter("orch_flow_events_total") == {"throttled/throttle/passed": 1}

    pair.r.delete(broken)
    for engine in pair.engines:
        engine._settings = Settings(**{**pair.settings.model_dump(), "engine_claim_idle_s": 0.0001})
    pair.engines[0].maintain(force=True)  # reclaimed and decided again: now it can be held
    pair.settle()
    assert pair.r.xpending("orch:events", "engine")["pending"] == 0
    assert pair.counter("orch_flow_events_total") == {"throttled/throttle/passed": 1, "debounced/debounce/merged": 1}
    assert pair.release_at(10) == 1
    assert [carried(run) for run in pair.by_rule("debounced")] == [["w1"]]
