"""A run a hold-back control releases (debounce, throttle) takes the rule's slot pool like a direct run:
its `concurrency` limit, its `singleton` mode, and the rule-set version that planned it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from executors.dispatch import RQDispatcher
from orchestrator import Client
from orchestrator.cli.wiring import load_project
from orchestrator.engine import Engine
from orchestrator.settings import Settings
from orchestrator.workflows.runs import Run, RunStatus, derive_run_id
from tests.projects import make_project

WORKFLOWS = {"held": """
    from orchestrator import task, workflow

    @task
    def note(count: int, customer: str) -> int:
        return count

    @workflow
    def held(count: int, customer: str):
        note(count, customer)
"""}

RULES = """
    rules:
      - name: deb
        type: cust.updated
        workflow: held
        params: {count: "{{ events | length }}", customer: "{{ data.customer }}"}
        debounce: {key: data.customer, period_s: 10}
        concurrency: {key: data.customer, limit: 1}
      - name: thr
        type: cust.called
        workflow: held
        params: {count: "{{ events | length }}", customer: "{{ data.customer }}"}
        throttle: {key: data.customer, limit: 1, period_s: 10, burst: 1}
        singleton: {key: data.customer, mode: skip}
"""
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class One:
    """One engine on an explicit clock; no worker, so every run it starts keeps running."""

    def __init__(self, r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
        root = make_project(tmp_path / "p", rules=RULES, workflows=WORKFLOWS)
        self.r, self.now = r, T0
        self.settings = Settings(redis_url=redis_url, project=root)
        self.project = load_project(root)
        self.engine = Engine(r, self.settings, self.project, RQDispatcher(r, self.settings), consumer="a",
                             clock=lambda: self.now)
        self.engine.consumer.ensure_groups()

    def emit(self, kind: str, customer: str, event_id: str) -> None:
        with Client(settings=self.settings, connection=self.r) as client:
            client.emit(kind, {"customer": customer}, id=event_id, source="/crm")
        self.settle()

    def settle(self) -> None:
        while self.engine.step(block=False):
            pass

    def release_at(self, seconds: float) -> int:
        self.now = T0 + timedelta(seconds=seconds)
        released = self.engine._flow.releases.release()
        self.settle()
        return released

    def runs(self, rule: str) -> list[Run]:
        ids = [i.decode() for i in self.r.zrange("orch:runs:workflow:held", 0, -1)]
        found = [run for run in self.engine.store.get_many(ids) if run is not None and run.rule == rule]
        return sorted(found, key=lambda run: run.created_at)


def test_debounced_runs_wait_for_the_rules_concurrency_slot(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    one = One(r, redis_url, tmp_path)
    one.emit("cust.updated", "c1", "d1")
    assert one.release_at(10) == 1
    one.emit("cust.updated", "c1", "d2")
    one.emit("cust.updated", "c2", "d3")  # another key: its own slot
    assert one.release_at(21) == 2
    first, second, other = one.runs("deb")
    assert first.status is RunStatus.RUNNING and other.status is RunStatus.RUNNING
    assert second.status is RunStatus.QUEUED, "limit 1 per customer: the second hold's run waits"
    assert first.slot is not None and second.slot is not None and other.slot is not None
    assert first.slot.pool == second.slot.pool != other.slot.pool and first.slot.key == "c1"
    assert all(run.ruleset == one.project.ruleset and run.ruleset for run in (first, second, other))


def test_a_throttled_run_is_skipped_while_its_singleton_holder_runs(r: redis.Redis, redis_url: str,
                                                                     tmp_path: Path) -> None:
    one = One(r, redis_url, tmp_path)
    one.emit("cust.called", "k", "t1")  # starts now: holds the singleton of k
    one.emit("cust.called", "k", "t2")  # throttled to 10 s
    assert [run.event.id for run in one.runs("thr")] == ["t1"]
    assert one.release_at(10) == 1  # t1 still runs: t2's run is skipped (mode skip), as a direct one would be
    assert [run.event.id for run in one.runs("thr")] == ["t1"]
    assert one.engine.store.get(derive_run_id("thr", "/crm", "t2")) is None
    skipped = r.hgetall("orch:metrics:orch_slot_events_total")
    assert skipped == {b"singleton\x1fthr\x1fskipped": b"1"}
