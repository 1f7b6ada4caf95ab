"""③ A rule that triggers its own workflow again stops at the chain depth limit, with a record and a metric;
and every event keeps the engine's decisions: the rules it matched with their runs, and why the others did not.
A real engine, real RQ workers and a real Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from orchestrator.cli.wiring import load_project
from orchestrator.engine import Engine
from orchestrator.events.decisions import EntryIdError, decisions_of, event_decisions
from orchestrator.events.envelope import Event
from orchestrator.events.publish import Publisher
from orchestrator.jsonutil import loads
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.steer import SteeringError
from orchestrator.state.steer import request as steer
from orchestrator.workflows.runs import Run, derive_run_id

from ..inproc import Stack
from ..projects import make_project

LOOP_RULES = """
    rules:
      - {name: kick, type: loop.start, workflow: again}
      - {name: again-and-again, type: orch.run.succeeded, source: /runs/again, workflow: again}
      - {name: ping-pong, type: loop.ping, workflow: pinger}
"""
LOOP_FLOWS = {"loops": """
    from orchestrator import task, workflow
    from orchestrator.context import current

    @task
    def once() -> str:
        return "again"

    @task
    def ping() -> str:
        return current().emit("loop.ping", {}, source="/pinger")

    @workflow
    def again():
        once()

    @workflow
    def pinger():
        ping()
"""}
KEYS = Keys()


@pytest.fixture
def loops(r: redis.Redis, redis_url: str, tmp_path: Path) -> Stack:
    project = load_project(make_project(tmp_path, rules=LOOP_RULES, workflows=LOOP_FLOWS))
    return Stack(r, Settings(redis_url=redis_url, project=tmp_path, chain_max_depth=3), project)


def runs_of(stack: Stack, workflow: str) -> list[Run]:
    ids = [i.decode() for i in stack.r.zrange(KEYS.runs_by_workflow(workflow), 0, -1)]
    return sorted((run for run in stack.engine.store.get_many(ids) if run is not None), key=lambda run: run.depth)


def entries_of(r: redis.Redis, type_: str) -> list[tuple[str, dict[str, object]]]:
    return [(entry.decode(), e) for entry, fields in r.xrange(KEYS.events)
            if (e := loads(fields[b"e"]))["type"] == type_]


def test_a_rule_that_retriggers_its_own_workflow_stops_at_the_limit(loops: Stack, r: redis.Redis) -> None:
    loops.emit("loop.start", {}, source="/test")
    loops.drain()

    chain = runs_of(loops, "again")
    assert [(run.depth, str(run.status)) for run in chain] == [(0, "succeeded"), (1, "succeeded"), (2, "succeeded"),
                                                               (3, "succeeded"), (4, "failed")]
    cut = chain[-1]
    assert cut.error == "rule again-and-again: chain depth 4 over limit 3"
    assert [str(t.state) for t in cut.tasks.values()] == ["skipped"], "recorded, never started"
    assert r.hgetall("orch:metrics:orch_chains_cut_total") == {b"again-and-again": b"1"}
    assert entries_of(r, "orch.run.failed") == [], "the cut announces nothing, so nothing can loop on it"

    last_entry, last = entries_of(r, "orch.run.succeeded")[-1]
    assert last["orchdepth"] == 4
    found = event_decisions(r, KEYS, last_entry)
    assert found is not None and found["decisions"]["depth"] == 4
    assert found["decisions"]["rules"] == [{"rule": "again-and-again", "outcome": "cut", "run": cut.id,
                                            "reason": cut.error}]
    assert r.xpending(KEYS.events, "engine")["pending"] == 0


def metric(r: redis.Redis, name: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(f"orch:metrics:{name}").items()}


def test_a_cut_is_no_run_to_metrics_and_cannot_be_retried_or_rerun_around_the_cut(loops: Stack,
                                                                                  r: redis.Redis) -> None:
    loops.emit("loop.start", {}, source="/test")
    loops.drain()
    cut = runs_of(loops, "again")[-1]
    assert cut.never_started and cut.depth == 4

    assert metric(r, "orch_workflow_runs_started_total") == {"again": "4"}, "the four runs, not the cut"
    assert not any("failed" in field for field in metric(r, "orch_workflow_runs_finished_total")), \
        "a cut is no failed run: OrchRunsFailing does not fire on it"
    assert not any("failed" in field for field in metric(r, "orch_workflow_run_duration_seconds"))
    counts = [int(v) for k, v in metric(r, "orch_event_to_run_seconds").items() if k.endswith("count")]
    assert sum(counts) == 4
    for action in ("retry", "rerun"):
        with pytest.raises(SteeringError, match="never started") as refused:
            steer(r, KEYS, loops.engine.store, action, cut.id, by="ops")
        assert refused.value.status == 409 and "send the event again" in str(refused.value)
    loops.drain()
    assert [str(run.status) for run in runs_of(loops, "again")] == ["succeeded"] * 4 + ["failed"], "nothing ran"


def test_events_a_task_emits_are_one_deeper_than_its_run_and_stop_at_the_limit(loops: Stack, r: redis.Redis) -> None:
    loops.emit("loop.ping", {}, source="/test")
    loops.drain()

    chain = runs_of(loops, "pinger")
    assert [(run.depth, str(run.status)) for run in chain] == [(0, "succeeded"), (1, "succeeded"), (2, "succeeded"),
                                                               (3, "succeeded"), (4, "failed")]
    assert chain[-1].error == "rule ping-pong: chain depth 4 over limit 3"
    assert r.hgetall("orch:metrics:orch_chains_cut_total") == {b"ping-pong": b"1"}


def test_an_engine_that_does_not_hold_the_emitting_run_reads_its_depth(loops: Stack, r: redis.Redis) -> None:
    loops.emit("loop.ping", {}, source="/test")
    loops.drain()
    deep = runs_of(loops, "pinger")[2]
    fresh = Engine(r, loops.settings, loops.project, loops.engine.dispatcher, consumer="fresh")

    emitted = Event.new("loop.ping", source="/pinger", extensions={"orchrun": deep.id, "orchtask": "ping"})
    gone = Event.new("loop.ping", source="/pinger", extensions={"orchrun": "no-such-run"})

    assert fresh._chronicle.run_depths([emitted, gone]) == {deep.id: 2, "no-such-run": 0}


DECISION_RULES = """
    schedules:
      - {name: tick, cron: "0 0 1 1 *", overlap: skip}
    rules:
      - {name: paid, type: user.*, match: {data.plan: [pro, team]}, workflow: quick, params: {n: "{{ data.n }}"}}
      - {name: elsewhere, type: user.signup, source: /other, workflow: quick}
      - {name: broken, type: user.signup, workflow: quick, params: {n: "{{ data.missing.value }}"}}
      - {name: everyone, type: user.signup, workflow: quick, params: {n: "{{ data.n }}"}}
      - {name: one-at-a-time, type: user.signup, workflow: single}
      - {name: on-tick, type: schedule.fired, source: /schedules/tick, workflow: single}
"""
DECISION_FLOWS = {"decided": """
    from orchestrator import task, workflow

    @task
    def step(n: int = 0) -> int:
        return n

    @task(queue="nowhere")
    def parked() -> None:
        return None

    @workflow
    def quick(n: int = 0):
        step(n)

    @workflow(concurrency=1)
    def single():
        parked()
"""}


@pytest.fixture
def decided(r: redis.Redis, redis_url: str, tmp_path: Path) -> Stack:
    project = load_project(make_project(tmp_path, rules=DECISION_RULES, workflows=DECISION_FLOWS))
    return Stack(r, Settings(redis_url=redis_url, project=tmp_path), project)


def test_each_event_records_the_rules_it_matched_and_why_the_others_did_not(decided: Stack, r: redis.Redis) -> None:
    for n in (1, 2):
        decided.emit("user.signup", {"plan": "free", "n": n}, source="/accounts", id=f"u-{n}")
    decided.engine.step(block=False)  # the runs of `single` wait on a queue nobody serves: it stays full
    (first, _), (second, _) = entries_of(r, "user.signup")

    found = event_decisions(r, KEYS, second)

    assert found is not None and found["state"] == "processed"
    assert found["event"]["id"] == "u-2" and found["event"]["entry_id"] == second
    record = found["decisions"]
    assert record["depth"] == 0 and record["omitted"] == 0
    run = {rule: derive_run_id(rule, "/accounts", "u-2") for rule in ("broken", "everyone", "one-at-a-time")}
    assert record["rules"] == [
        {"rule": "paid", "outcome": "not_matched", "reason": "data.plan is 'free' (expected one of 'pro', 'team')",
         "stopped_by": "match", "path": "data.plan", "seen": "free", "expected": ["pro", "team"]},
        {"rule": "broken", "outcome": "error", "run": run["broken"],
         "reason": "rule broken: params.n: 'dict object' has no attribute 'missing'"},
        {"rule": "everyone", "outcome": "matched", "run": run["everyone"]},
        {"rule": "one-at-a-time", "outcome": "queued", "run": run["one-at-a-time"],
         "reason": "workflow single is at its concurrency limit (1); the run starts when a slot frees"},
    ]
    for rule, run_id in run.items():
        assert decided.engine.store.get(run_id) is not None, f"the run of {rule} the record names exists"
    assert 0 < r.ttl(KEYS.decisions(second)) <= decided.settings.events_retention_s, "kept as long as the events"
    earlier = decisions_of(r, KEYS, [first, second])
    assert earlier[first]["rules"][-1]["outcome"] == "matched", "the first took the slot"  # type: ignore[index]


def test_a_tick_skipped_by_its_overlap_policy_says_so(decided: Stack, r: redis.Redis) -> None:
    publisher = Publisher(r, KEYS, dedup_window_s=60, max_bytes=1 << 20, trigger="cron")
    for tick in ("tick@1", "tick@2"):
        publisher.publish([Event.new("schedule.fired", source="/schedules/tick", id=tick)])
        decided.engine.step(block=False)
    (first, _), (second, _) = entries_of(r, "schedule.fired")

    holder = derive_run_id("on-tick", "/schedules/tick", "tick@1")
    assert decisions_of(r, KEYS, [first])[first]["rules"] == [  # type: ignore[index]
        {"rule": "on-tick", "outcome": "matched", "run": holder}]
    assert decisions_of(r, KEYS, [second])[second]["rules"] == [  # type: ignore[index]
        {"rule": "on-tick", "outcome": "skipped", "run": derive_run_id("on-tick", "/schedules/tick", "tick@2"),
         "reason": f"schedule tick: run {holder} still running (overlap: skip)"}]


def test_events_no_rule_listens_to_have_no_record_and_bad_ids_are_refused(decided: Stack, r: redis.Redis) -> None:
    decided.emit("nobody.listens", {}, source="/x")
    (entry, _), = entries_of(r, "nobody.listens")
    assert event_decisions(r, KEYS, entry)["state"] == "waiting"  # type: ignore[index]
    decided.engine.step(block=False)

    found = event_decisions(r, KEYS, entry)

    assert found is not None and found["decisions"] is None and found["state"] == "processed"
    assert event_decisions(r, KEYS, "1-0") is None
    with pytest.raises(EntryIdError):
        event_decisions(r, KEYS, "../../etc")
