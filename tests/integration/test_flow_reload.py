"""A reload that removes a rule's hold-back control never starts a second run for an event the control
already held (promise 1): the decision made under the earlier rule-set version stands, whether the batch
is planned again by the same engine or the event is taken over by an engine that never had the control."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from executors.dispatch import RQDispatcher
from executors.refresh import ProjectRefresh
from orchestrator.cli.wiring import load_project
from orchestrator.engine import Engine
from orchestrator.engine.batch import Batch
from orchestrator.flow.decide import hold_run_id
from orchestrator.settings import Settings
from orchestrator.workflows.runs import Run
from tests.inproc import Stack
from tests.integration.test_flow_hold import RULES as HELD_RULES
from tests.integration.test_flow_hold import WORKFLOWS as HELD_WORKFLOWS
from tests.integration.test_flow_hold import Pair, carried
from tests.integration.test_reload import ONE_TASK
from tests.projects import make_project

DEBOUNCED = """\
rules:
  - name: ship-orders
    type: order.paid
    workflow: ship
{extra}    params: {{order_id: "{{{{ event.data.id }}}}"}}
"""
WITH = "    debounce: {key: data.id, period_s: 5, max_wait_s: 60}\n"


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def _engine(r: redis.Redis, url: str, root: Path, name: str, clock: Clock) -> Stack:
    stack = Stack(r, Settings(redis_url=url, project=root), load_project(root), consumer=name, clock=clock)
    stack.engine.reload.reload_from(lambda: load_project(root))
    stack.refresh = ProjectRefresh(root, lambda: load_project(root))
    stack.engine.reload.check()
    return stack


def _runs(r: redis.Redis, stack: Stack) -> list[Run]:
    found = [stack.engine.store.get(i.decode()) for i in r.zrange("orch:runs", 0, -1)]
    return [run for run in found if run is not None]


def test_a_batch_planned_again_after_the_control_is_removed_keeps_the_event_held(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    clock = Clock()
    a_root = make_project(tmp_path / "a", rules=DEBOUNCED.format(extra=WITH), workflows={"ship": ONE_TASK})
    b_root = make_project(tmp_path / "b", rules=DEBOUNCED.format(extra=WITH), workflows={"ship": ONE_TASK})
    a, b = _engine(r, redis_url, a_root, "engine-a", clock), _engine(r, redis_url, b_root, "engine-b", clock)
    plan, versions = b.engine._plan, []

    def plan_then_publish(entries: list, timers: list | None = None) -> Batch:
        batch = plan(entries, timers)  # decided under the version with the debounce: the event is held ...
        versions.append(b.engine.reload.project.ruleset)
        if len(versions) == 1 and entries:  # ... and before the commit, engine a publishes one without it
            (a_root / "rules" / "rules.yaml").write_text(DEBOUNCED.format(extra=""))
            a.engine.reload.changed()
            a.engine.reload.check()
        return batch

    b.engine._plan = plan_then_publish  # type: ignore[method-assign]
    b.emit("order.paid", {"id": "o-1"}, source="/shop", id="e-1")
    b.drain()
    assert len(versions) >= 2 and versions[0] != versions[-1], "the batch was planned again under the new version"
    assert _runs(r, b) == [], "the held event starts no run of its own"
    clock.offset = timedelta(seconds=120)
    a.engine.maintain(force=True)
    b.engine.maintain(force=True)
    a.drain()
    b.drain()
    (run,) = _runs(r, b)
    assert run.flow is not None and run.flow["control"] == "debounce" and [e["event"]["id"] for e in run.events or []] == ["e-1"]


def test_an_engine_that_never_had_the_control_keeps_a_decision_made_before_it_took_the_event_over(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    pair = Pair(r, tmp_path, redis_url)
    pair.emit("cust.updated", "c1", "d1")
    crashed = pair.engines[1]
    crashed._plan(crashed.consumer.read(block=False))  # decided (held) ... and died before its commit
    without = HELD_RULES.replace("        debounce: {key: data.customer, period_s: 10, max_wait_s: 30}\n", "")
    assert without != HELD_RULES
    root = make_project(tmp_path / "without", rules=without, workflows=HELD_WORKFLOWS)
    settings = Settings(redis_url=redis_url, project=root, engine_claim_idle_s=0.0001)
    fresh = Engine(r, settings, load_project(root), RQDispatcher(r, settings), consumer="fresh", clock=pair.clock)
    fresh.maintain(force=True)  # reclaims the entry: its rule `debounced` has no control here
    while fresh.step(block=False):
        pass
    assert pair.r.xpending("orch:events", "engine")["pending"] == 0
    assert pair.runs() == [], "no direct run: the event is in its hold"
    decision = pair.outcome("d1", "debounced")
    assert decision["outcome"] == "debounced" and decision["detail"]["recalled"] is True  # type: ignore[index]
    assert pair.release_at(10) == 1
    (run,) = pair.runs()
    assert carried(run) == ["d1"] and run.id == hold_run_id("debounced", decision["detail"]["hold"])  # type: ignore[index]
