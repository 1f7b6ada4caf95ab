"""Reloading rules and workflows without a restart, on a real Redis with in-process engines (engine/reload.py).

Each engine has its own copy of the project (its own directory, as on its own machine). A change to a copy
is what the project watcher reports (`Reloader.changed()`); `check()` is the engine's periodic chore.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from executors.refresh import ProjectRefresh
from executors.worker import run_worker
from orchestrator.catalog import read_catalog
from orchestrator.cli.wiring import load_project
from orchestrator.engine.batch import Batch
from orchestrator.engine.reload import ProjectBehind
from orchestrator.engine.watch import watch_project_files
from orchestrator.metrics import PROJECT_RELOADS
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.ruleset import active_version, read_views
from orchestrator.state.steer import request as steer
from orchestrator.workflows.runs import RunStatus, TaskState

from ..helpers import wait_for
from ..inproc import Stack
from ..projects import make_project

KEYS = Keys("orch")

FLOW = '''\
from orchestrator import task, workflow


@task
def pack(order_id: str) -> str:
    return f"packed {{order_id}}"


@task
def label(packed: str) -> str:
    return f"labelled {{packed}}"


@workflow
def ship(order_id: str):
    {body}
'''
ONE_TASK = FLOW.format(body="pack(order_id)")
TWO_TASKS = FLOW.format(body="label(pack(order_id))")

RULES = """\
rules:
  - name: ship-orders
    type: order.paid
    match: {{data.region: {region}}}
    workflow: ship
    params: {{order_id: "{{{{ event.data.id }}}}"}}
"""


def write_rules(root: Path, region: str) -> None:
    (root / "rules" / "rules.yaml").write_text(RULES.format(region=region))


def copy_at(root: Path, region: str = "eu", flow: str = ONE_TASK) -> Path:
    make_project(root, rules=RULES.format(region=region), workflows={"ship": flow})
    return root


def engine_on(r: redis.Redis, redis_url: str, root: Path, name: str) -> Stack:
    """An in-process engine (and burst worker) on its own copy at `root`, able to load it again."""
    stack = Stack(r, Settings(redis_url=redis_url, project=root), load_project(root), consumer=name)
    stack.engine.reload.reload_from(lambda: load_project(root))
    stack.refresh = ProjectRefresh(root, lambda: load_project(root))  # as `orch worker` does
    stack.engine.reload.check()  # what `Engine.run` does first: publish its version (the last started wins)
    return stack


def reloads(r: redis.Redis) -> dict[str, int]:
    raw = r.hgetall(KEYS.metric(PROJECT_RELOADS.name))
    return {k.decode(): int(v) for k, v in raw.items()}


def runs_of(stack: Stack) -> list[Any]:
    return [stack.engine.store.get(i.decode()) for i in stack.r.zrange("orch:runs", 0, -1)]


def test_a_changed_rule_file_is_taken_up_and_events_after_the_switch_use_it(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    root = copy_at(tmp_path / "p")
    stack = engine_on(r, redis_url, root, "engine-1")
    old = stack.engine.reload.project.ruleset
    assert active_version(r, KEYS) == old
    before = stack.emit("order.paid", {"id": "o-1", "region": "eu"}, source="/shop")
    ignored = stack.emit("order.paid", {"id": "o-2", "region": "us"}, source="/shop")
    stack.drain()

    write_rules(root, "us")
    stack.engine.reload.changed()
    stack.engine.reload.check()
    new = active_version(r, KEYS)
    assert new is not None and new != old and stack.engine.reload.project.ruleset == new
    after = stack.emit("order.paid", {"id": "o-3", "region": "us"}, source="/shop")
    not_any_more = stack.emit("order.paid", {"id": "o-4", "region": "eu"}, source="/shop")
    stack.drain()

    assert stack.run("ship-orders", "/shop", before).ruleset == old
    run = stack.run("ship-orders", "/shop", after)
    assert run.ruleset == new and run.status is RunStatus.SUCCEEDED
    assert run.to_dict()["ruleset"] == new
    started = {r_.event.id for r_ in runs_of(stack)}
    assert ignored not in started and not_any_more not in started
    assert reloads(r) == {"ok": 1}
    catalog = read_catalog(r, KEYS)
    assert catalog is not None and catalog["ruleset"] == new and '"us"' in catalog["rules"][0]["filter"]
    (view,) = read_views(r, KEYS).values()
    assert (view.engine, view.version, view.state) == ("engine-1", new, "ok")


def test_an_invalid_change_keeps_the_old_version_and_says_where(
        r: redis.Redis, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = copy_at(tmp_path / "p")
    stack = engine_on(r, redis_url, root, "engine-1")
    old = stack.engine.reload.project.ruleset
    (root / "rules" / "rules.yaml").write_text(RULES.format(region="us").replace("workflow: ship", "workflow: shipp"))
    stack.engine.reload.changed()
    with caplog.at_level(logging.ERROR, logger="orchestrator.engine.reload"):
        stack.engine.reload.check()

    assert active_version(r, KEYS) == old and stack.engine.reload.project.ruleset == old
    assert reloads(r) == {"refused": 1}
    assert "rules.yaml:5: rules[0].workflow: unknown workflow 'shipp'" in caplog.text
    assert f"still running rule-set version {old}" in caplog.text
    (view,) = read_views(r, KEYS).values()
    assert view.state == "ok" and view.refused is not None and "rules[0].workflow" in view.refused
    event = stack.emit("order.paid", {"id": "o-1", "region": "eu"}, source="/shop")
    stack.drain()
    assert stack.run("ship-orders", "/shop", event).ruleset == old


@pytest.mark.parametrize("raised", ["SystemExit(3)", "KeyboardInterrupt()"])
def test_a_workflow_module_that_exits_at_import_is_a_refused_change_not_the_engines_end(
        r: redis.Redis, redis_url: str, tmp_path: Path, raised: str) -> None:
    root = copy_at(tmp_path / "p")
    stack = engine_on(r, redis_url, root, "engine-1")
    old = stack.engine.reload.project.ruleset
    (root / "workflows" / "ship.py").write_text(f"raise {raised}\n" + TWO_TASKS)
    stack.engine.reload.changed()
    stack.engine.reload.check()  # before: SystemExit / KeyboardInterrupt out of the engine's thread

    assert active_version(r, KEYS) == old and stack.engine.reload.project.ruleset == old
    assert reloads(r) == {"refused": 1}
    (view,) = read_views(r, KEYS).values()
    assert view.refused is not None and "ship.py:1" in view.refused and raised.split("(")[0] in view.refused
    event = stack.emit("order.paid", {"id": "o-1", "region": "eu"}, source="/shop")
    stack.drain()
    assert stack.run("ship-orders", "/shop", event).ruleset == old


def test_two_engines_with_their_own_copies_switch_to_the_same_version(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    a = engine_on(r, redis_url, copy_at(tmp_path / "a"), "engine-a")
    b = engine_on(r, redis_url, copy_at(tmp_path / "b"), "engine-b")
    write_rules(tmp_path / "a", "us")  # only a's copy changes: rules travel through Redis as data
    a.engine.reload.changed()
    a.engine.reload.check()
    b.engine.reload.check()
    new = active_version(r, KEYS)
    assert a.engine.reload.project.ruleset == b.engine.reload.project.ruleset == new
    event = b.emit("order.paid", {"id": "o-1", "region": "us"}, source="/shop")
    b.drain()
    assert b.run("ship-orders", "/shop", event).ruleset == new
    assert {v.engine: v.version for v in read_views(r, KEYS).values()} == {"engine-a": new, "engine-b": new}


def test_a_batch_planned_under_a_replaced_version_is_planned_again_under_the_new_one(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    a = engine_on(r, redis_url, copy_at(tmp_path / "a"), "engine-a")
    b = engine_on(r, redis_url, copy_at(tmp_path / "b"), "engine-b")
    old = b.engine.reload.project.ruleset
    plans: list[str] = []
    plan = b.engine._plan

    def plan_then_publish(entries: list[Any], timers: Any = None) -> Batch:
        batch = plan(entries, timers)
        plans.append(b.engine.reload.project.ruleset)
        if len(plans) == 1:  # another engine publishes a new version between this plan and its commit
            write_rules(tmp_path / "a", "us")
            a.engine.reload.changed()
            a.engine.reload.check()
        return batch

    b.engine._plan = plan_then_publish  # type: ignore[method-assign]
    event = b.emit("order.paid", {"id": "o-1", "region": "us"}, source="/shop")  # matches only the new rules
    b.drain()
    new = active_version(r, KEYS)
    assert plans[:2] == [old, new]
    assert b.run("ship-orders", "/shop", event).ruleset == new


def test_a_version_published_during_the_commit_aborts_it_by_the_watch(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    a = engine_on(r, redis_url, copy_at(tmp_path / "a"), "engine-a")
    b = engine_on(r, redis_url, copy_at(tmp_path / "b"), "engine-b")
    queue = b.engine._chronicle.queue
    published: list[bool] = []

    def publish_inside_the_transaction(*args: Any) -> None:
        if not published:  # after the version was WATCHed and read, before EXEC
            published.append(True)
            write_rules(tmp_path / "a", "us")
            a.engine.reload.changed()
            a.engine.reload.check()
        queue(*args)

    b.engine._chronicle.queue = publish_inside_the_transaction  # type: ignore[method-assign]
    event = b.emit("order.paid", {"id": "o-1", "region": "us"}, source="/shop")
    b.drain()
    assert published and b.run("ship-orders", "/shop", event).ruleset == active_version(r, KEYS)


def test_an_engine_that_cannot_load_the_active_version_plans_no_event_until_it_can(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    a = engine_on(r, redis_url, copy_at(tmp_path / "a"), "engine-a")
    b = engine_on(r, redis_url, copy_at(tmp_path / "b"), "engine-b")
    old = b.engine.reload.project.ruleset
    (tmp_path / "a" / "workflows" / "ship.py").write_text(TWO_TASKS)  # a workflow b's copy does not have yet
    a.engine.reload.changed()
    a.engine.reload.check()
    new = active_version(r, KEYS)
    assert a.engine.reload.project.ruleset == new != old

    event = b.emit("order.paid", {"id": "o-1", "region": "eu"}, source="/shop")
    with pytest.raises(ProjectBehind, match="workflow 'ship' is version"):
        b.engine.step(block=False)  # b read the event, and finds at its commit that it cannot switch
    b.engine.reload.hand_back()  # what its loop does next: hand back the events it holds, report
    assert r.zcard("orch:runs") == 0 and b.engine.consumer.streams == ["orch:results"]
    views = read_views(r, KEYS)
    assert (views["engine-b"].state, views["engine-b"].version, views["engine-b"].wanted) == ("behind", old, new)
    assert reloads(r) == {"ok": 1, "behind": 1}
    with pytest.raises(ProjectBehind):
        b.engine.reload.check()  # its next try: still behind, counted once
    assert reloads(r)["behind"] == 1

    a.engine.maintain(force=True)  # the engine on the active version takes the event over at once
    a.drain()
    taken = a.run("ship-orders", "/shop", event)
    assert taken.ruleset == new and taken.status is RunStatus.SUCCEEDED
    assert r.xpending("orch:events", "engine")["pending"] == 0

    (tmp_path / "b" / "workflows" / "ship.py").write_text(TWO_TASKS)  # b's copy is deployed: it re-imports it
    b.engine.maintain(force=True)  # its next check (no watcher here: a behind engine sees its files changed)
    assert b.engine.consumer.streams == ["orch:events", "orch:results"]
    later = b.emit("order.paid", {"id": "o-2", "region": "eu"}, source="/shop")
    b.drain()
    run = b.run("ship-orders", "/shop", later)
    assert run.ruleset == new and list(run.tasks) == ["pack", "label"] and run.status is RunStatus.SUCCEEDED
    assert [n.name for n in b.engine._current["ship"].nodes] == ["pack", "label"]


def test_a_behind_engine_still_applies_results_and_cancels_and_leaves_events_to_current_engines(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    a = engine_on(r, redis_url, copy_at(tmp_path / "a"), "engine-a")
    b = engine_on(r, redis_url, copy_at(tmp_path / "b"), "engine-b")
    old = b.engine.reload.project.ruleset
    first = b.emit("order.paid", {"id": "o-1", "region": "eu"}, source="/shop")
    doomed = b.emit("order.paid", {"id": "o-0", "region": "eu"}, source="/shop")
    b.engine.step(block=False)  # b starts the runs and dispatches their tasks; no worker has run them yet
    started = b.run("ship-orders", "/shop", first)
    assert started.ruleset == old and started.status is RunStatus.RUNNING

    (tmp_path / "a" / "workflows" / "ship.py").write_text(TWO_TASKS)  # a version b's copy cannot load
    a.engine.reload.changed()
    a.engine.reload.check()
    b.engine.maintain(force=True)  # b's check: behind (its chore says so, and does not stop the loop)
    assert read_views(r, KEYS)["engine-b"].state == "behind"

    second = b.emit("order.paid", {"id": "o-2", "region": "eu"}, source="/shop")
    steer(r, KEYS, b.engine.store, "cancel", b.run("ship-orders", "/shop", doomed).id)
    b.engine.step(block=False)  # b, behind, applies the cancel (before: ProjectBehind, nothing read)
    assert b.run("ship-orders", "/shop", doomed).status is RunStatus.CANCELLED
    b.drain()  # the worker runs the other task; b applies its result
    assert b.run("ship-orders", "/shop", first).status is RunStatus.SUCCEEDED
    assert r.zcard("orch:runs") == 2  # the new event was left to an engine on the active version
    a.drain()
    run = a.run("ship-orders", "/shop", second)
    assert run.ruleset == active_version(r, KEYS) != old and run.status is RunStatus.SUCCEEDED


def test_a_rerun_only_behind_engines_see_is_kept_not_dead_lettered_and_runs_once_one_can(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    a = engine_on(r, redis_url, copy_at(tmp_path / "a"), "engine-a")
    b = engine_on(r, redis_url, copy_at(tmp_path / "b"), "engine-b")
    first = b.emit("order.paid", {"id": "o-1", "region": "eu"}, source="/shop")
    b.drain()
    done = b.run("ship-orders", "/shop", first)
    (tmp_path / "a" / "workflows" / "ship.py").write_text(TWO_TASKS)
    a.engine.reload.changed()
    a.engine.reload.check()  # then engine a goes away: b, behind, is the only engine left
    b.engine.maintain(force=True)
    steer(r, KEYS, b.engine.store, "rerun", done.id)  # a rerun takes the workflow's current version: not b's
    for _ in range(b.settings.engine_max_deliveries + 2):  # b reads it, hands it back, reclaims it, ...
        b.engine.step(block=False)
        b.engine.maintain(force=True)
    assert r.xlen(KEYS.dead_letters) == 0 and r.xpending("orch:results", "engine")["pending"] == 1
    assert r.zcard("orch:runs") == 1

    (tmp_path / "b" / "workflows" / "ship.py").write_text(TWO_TASKS)
    b.engine.maintain(force=True)  # b can load the active version now; its next reclaim takes the rerun
    b.drain()
    b.engine.maintain(force=True)
    b.drain()
    rerun = [run for run in runs_of(b) if run.id != done.id]
    assert len(rerun) == 1 and list(rerun[0].tasks) == ["pack", "label"], [r_.to_dict() for r_ in rerun]


def test_a_worker_whose_files_lag_a_reload_retries_the_task_until_they_come(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    a = engine_on(r, redis_url, copy_at(tmp_path / "a"), "engine-a")
    host = copy_at(tmp_path / "worker-host")  # the worker's copy: the old workflow, until it is deployed
    a.project, a.refresh = load_project(host), ProjectRefresh(host, lambda: load_project(host))
    (tmp_path / "a" / "workflows" / "ship.py").write_text(TWO_TASKS)
    a.engine.reload.changed()
    a.engine.reload.check()  # the engine runs the new version; the worker's files are not there yet
    event = a.emit("order.paid", {"id": "o-1", "region": "eu"}, source="/shop")
    a.engine.step(block=False)
    run_worker(r, a.settings, a.project, a.project.queues, burst=True, refresh=a.refresh)
    a.engine.step(block=False)  # before: refused for good (UnknownWorkflowVersion, retryable=False): run failed

    run = a.run("ship-orders", "/shop", event)
    pack = run.tasks["pack"]
    assert run.status is RunStatus.RUNNING and pack.state is TaskState.RETRYING, run.to_dict()
    assert pack.history[-1]["error_type"] == "WorkflowNotDeployed"
    (host / "workflows" / "ship.py").write_text(TWO_TASKS)  # deployed: the next attempt finds it

    def finished() -> bool:
        a.drain()
        return a.run("ship-orders", "/shop", event).status is RunStatus.SUCCEEDED
    wait_for(finished, message="the retried attempt to run once the worker has the workflow")
    assert list(a.run("ship-orders", "/shop", event).tasks) == ["pack", "label"]


def heard_after_writes(folder: Path, hits: list[float], name: str) -> bool:
    """Write a rule file once more (the watcher may not have started yet) and say whether it was heard."""
    before = len(hits)
    counter = next(WRITES)
    (folder / name).write_text(f"rules: []  # {counter}\n")
    return _heard(hits, before)


WRITES = itertools.count()


def _heard(hits: list[float], before: int) -> bool:
    try:
        wait_for(lambda: len(hits) > before, timeout_s=1.0, message="a change heard")
    except AssertionError:
        return False
    return True


def test_the_watcher_still_hears_rules_deleted_and_made_again(tmp_path: Path) -> None:
    root = copy_at(tmp_path / "p")
    hits: list[float] = []
    stop = threading.Event()
    settings = Settings(redis_url="redis://localhost:1/0", project=root, engine_reload_debounce_s=0.05)
    thread = watch_project_files(root, settings, stop, lambda: hits.append(1.0))
    try:
        wait_for(lambda: heard_after_writes(root / "rules", hits, "a.yaml"), message="the watcher started")
        for folder in (root / "rules", root / "workflows"):  # a git checkout, a directory swap
            deleted = len(hits) + 1
            shutil.rmtree(folder)
            wait_for(lambda n=deleted: len(hits) >= n, message="the deletion heard")  # before it is made again
            folder.mkdir()
            wait_for(lambda f=folder: heard_after_writes(f, hits, "b.yaml"), message=f"{folder} made again")
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(5)


def test_a_change_the_watcher_missed_is_found_by_the_check(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    root = copy_at(tmp_path / "p")
    stack = engine_on(r, redis_url, root, "engine-1")
    old = stack.engine.reload.project.ruleset
    stopped = threading.Event()
    stopped.set()  # a watcher that has stopped (out of inotify watches, say): it hears nothing
    stack.engine.reload.watch(root, stack.engine.settings, stopped).join(5)
    write_rules(root, "us")
    stack.engine.reload.check()  # the fingerprint of the files differs from the one loaded: load them again
    assert active_version(r, KEYS) != old and stack.engine.reload.project.ruleset == active_version(r, KEYS)


def _one_publish_fails(client: redis.Redis) -> redis.Redis:
    """`client`, except that its first transaction writing the active version fails as a failover would
    (the connection lost mid-way): a Redis fault, injected at the client since a real one cannot be aimed."""
    real, failed = client.pipeline, []

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real(*args, **kwargs)
        execute = pipe.execute

        def once(*eargs: Any, **ekwargs: Any) -> Any:
            if not failed and any(cmd[:2] == ("SET", KEYS.ruleset) for cmd, _ in pipe.command_stack):
                failed.append(True)
                pipe.reset()
                raise redis.ConnectionError("Connection closed by server (a failover)")
            return execute(*eargs, **ekwargs)

        pipe.execute = once
        return pipe

    client.pipeline = pipeline  # type: ignore[method-assign]
    return client


def test_an_engine_whose_start_meets_a_redis_error_publishes_its_version_once_redis_is_back(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    engine_on(r, redis_url, copy_at(tmp_path / "old", "eu"), "engine-old")
    old = active_version(r, KEYS)
    root = copy_at(tmp_path / "new", "us")
    flaky = _one_publish_fails(redis.Redis.from_url(redis_url))
    stack = Stack(flaky, Settings(redis_url=redis_url, project=root), load_project(root), consumer="engine-new")
    with pytest.raises(redis.ConnectionError):
        stack.engine.reload.check()  # the start's publish fails: Engine.run rides it out and checks again
    stack.engine.reload.check()
    new = active_version(r, KEYS)
    assert new != old and new == stack.engine.reload.project.ruleset, "the start was tried again, not skipped"
