"""An engine that is behind the active rule-set version (engine/reload.py, behind.py) still finishes what
runs carry with them, but never loosens what it does not know: a concurrency limit a newer version added
stays (engine/slots.py current_limit), and a look-back timer's hit resumes its step by the run's own spec.
And the engine bounds the retries of a "workflow not deployed" refusal itself (workflows/advance.py).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import redis

from executors.worker import run_worker
from orchestrator.cli.wiring import load_project
from orchestrator.settings import Settings
from orchestrator.state.ruleset import read_views
from orchestrator.workflows.advance import NOT_DEPLOYED_MAX_RETRIES
from orchestrator.workflows.runs import RunStatus

from ..helpers import wait_for
from ..inproc import Stack
from ..projects import make_project
from .test_reload import KEYS, ONE_TASK, TWO_TASKS, copy_at, engine_on, runs_of
from .test_waits import RULES, WORKFLOWS, Clock, pay

LIMITED = ONE_TASK.replace("@workflow", "@workflow(concurrency=1)")


def test_a_behind_engine_does_not_lift_a_limit_a_newer_version_added(r: redis.Redis, redis_url: str,
                                                                     tmp_path: Path) -> None:
    a = engine_on(r, redis_url, copy_at(tmp_path / "a"), "engine-a")
    b = engine_on(r, redis_url, copy_at(tmp_path / "b"), "engine-b")
    (tmp_path / "a" / "workflows" / "ship.py").write_text(LIMITED)
    a.engine.reload.changed()
    a.engine.reload.check()
    b.engine.maintain(force=True)
    assert read_views(r, KEYS)["engine-b"].state == "behind"
    for i in range(3):
        a.emit("order.paid", {"id": f"o-{i}", "region": "eu"}, source="/shop")
    a.engine.step(block=False)
    assert sorted(run.status.value for run in runs_of(a)) == ["queued", "queued", "running"]

    b.engine.maintain(force=True)  # b renews leases with its own project, which has no limit
    b.engine.step(block=False)
    a.engine.step(block=False)

    assert sorted(run.status.value for run in runs_of(a)) == ["queued", "queued", "running"]


EXTRA_RULES = RULES + """  - name: extra
    type: extra.thing
    workflow: extra
"""
EXTRA_WORKFLOWS = {**WORKFLOWS, "more": """\
    from orchestrator import task, workflow

    @task
    def noop() -> str:
        return "x"

    @workflow
    def extra():
        noop()
"""}


def _engine(r: redis.Redis, url: str, root: Path, name: str) -> Stack:
    stack = Stack(r, Settings(redis_url=url, project=root), load_project(root), consumer=name)
    stack.engine.reload.reload_from(lambda: load_project(root))
    stack.engine.reload.check()
    return stack


def test_a_behind_engine_resumes_a_wait_its_look_back_found(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    a = _engine(r, redis_url, make_project(tmp_path / "a", rules=RULES, workflows=WORKFLOWS), "engine-a")
    b = _engine(r, redis_url, make_project(tmp_path / "b", rules=RULES, workflows=WORKFLOWS), "engine-b")
    event = b.emit("order.created", {"order_id": "o-1"}, source="/shop", id="order-o-1")
    b.engine.step(block=False)
    pay(b, "o-1", amount=7)  # early: the run's first task has not finished
    b.engine.step(block=False)
    make_project(tmp_path / "a", rules=EXTRA_RULES, workflows=EXTRA_WORKFLOWS)  # a version b's copy lacks
    a.engine.reload.changed()
    a.engine.reload.check()
    b.engine.maintain(force=True)
    assert read_views(r, KEYS)["engine-b"].state == "behind"

    for _ in range(6):  # a ProjectBehind here would leave the look-back timer due for ever
        run_worker(r, b.settings, b.project, b.project.queues, burst=True)
        b.engine.step(block=False)

    run = b.run("checkout", "/shop", event)
    assert run is not None and run.status is RunStatus.SUCCEEDED


NOT_DEPLOYED_RULES = """\
rules:
  - name: go
    type: thing.happened
    workflow: flaky
"""
NOT_DEPLOYED_WORKFLOWS = {"flaky": """\
    from orchestrator import task, workflow
    from executors.kinds.errors import TaskFailure

    @task
    def boom() -> str:
        raise TaskFailure("my own error", error_type="WorkflowNotDeployed", retryable=True)

    @workflow
    def flaky():
        boom()
"""}


def test_not_deployed_refusals_are_retried_a_bounded_number_of_times(r: redis.Redis, settings: Settings,
                                                                      tmp_path: Path) -> None:
    clock = Clock()
    root = make_project(tmp_path / "p", rules=NOT_DEPLOYED_RULES, workflows=NOT_DEPLOYED_WORKFLOWS)
    stack = Stack(r, Settings(**{**settings.model_dump(), "project": root}), load_project(root), clock=clock)
    event = stack.emit("thing.happened", {}, source="/x")
    for _ in range(NOT_DEPLOYED_MAX_RETRIES + 8):
        stack.drain()
        clock.offset += timedelta(seconds=11)

    run = stack.run("go", "/x", event)
    assert run is not None and run.status is RunStatus.FAILED
    assert run.tasks["boom"].attempt == NOT_DEPLOYED_MAX_RETRIES + 1


def test_an_engine_behind_from_its_start_steps_instead_of_trying_its_start_again(r: redis.Redis, redis_url: str,
                                                                                 tmp_path: Path) -> None:
    """A started (its version published), then B, with another workflow graph A cannot load, a moment later:
    a rolling deploy. A's loop then finds itself behind at its start-up check. It must step as a behind
    engine (task results, cancels, timers), not retry its start in a tight loop that never steps."""
    a = engine_on(r, redis_url, copy_at(tmp_path / "a", flow=ONE_TASK), "engine-a")
    engine_on(r, redis_url, copy_at(tmp_path / "b", flow=TWO_TASKS), "engine-b")
    steps: list[int] = []
    step = a.engine.step

    def counted(block: bool = True) -> int:
        steps.append(step(block))
        return steps[-1]

    a.engine.step = counted  # type: ignore[method-assign]
    stop = threading.Event()
    loop = threading.Thread(target=a.engine.run, args=(stop,), daemon=True)
    loop.start()
    try:
        wait_for(lambda: steps, 30, "the behind engine to step")
        assert a.engine.reload.behind()
    finally:
        stop.set()
        loop.join(30)
