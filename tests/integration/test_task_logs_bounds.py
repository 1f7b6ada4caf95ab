"""Task logs read within bounds, in a real Redis with real workers: a whole-run read of a wide fan-out
returns at most MAX_ATTEMPTS attempts and says what it left out, a read stays within its byte budget, a
follower follows at most the bound, and a follower waits for the last lines of an attempt the engine
stopped while its worker still ran it."""

from __future__ import annotations

import pytest
import redis

from executors.logship import LogShipper
from orchestrator.cli.wiring import load_project
from orchestrator.project import Project
from orchestrator.settings import Settings
from orchestrator.state import logs as storage
from orchestrator.state.keys import Keys
from orchestrator.state.logs import LogCap
from orchestrator.state.steer import request
from orchestrator.workflows.logs import MAX_ATTEMPTS, End, Lines, LogFollower, Notice, read_logs
from orchestrator.workflows.runs import RunStatus, TaskState, derive_run_id

from ..helpers import wait_for
from ..inproc import Stack
from ..projects import make_project

KEYS = Keys()
WIDE = MAX_ATTEMPTS + 5
RULES = """\
rules:
  - {name: wide, type: t.wide, workflow: wide, params: {n: "{{ data.n }}"}}
  - {name: slow, type: t.slow, workflow: slow}
"""
WORKFLOWS = {"wide_flows": """\
    from orchestrator import task, workflow
    from orchestrator.context import current

    @task
    def numbers(n: int) -> list[int]:
        return list(range(int(n)))

    @task
    def echo(item: int) -> int:
        current().logger.info("item %d", item)
        return item

    @task
    def waits() -> None:
        pass

    @workflow
    def wide(n: int):
        echo.map(numbers(n))

    @workflow
    def slow():
        waits()
"""}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return load_project(make_project(tmp_path_factory.mktemp("bounds"), rules=RULES, workflows=WORKFLOWS))


def stack_for(r: redis.Redis, redis_url: str, project: Project) -> Stack:
    return Stack(r, Settings(redis_url=redis_url, project=project.root), project)


def wide_run(r: redis.Redis, redis_url: str, project: Project) -> str:
    stack = stack_for(r, redis_url, project)
    run_id = derive_run_id("wide", "/orch/client", stack.emit("t.wide", {"n": WIDE}))
    stack.drain(rounds=60)
    run = stack.engine.store.get(run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED
    return run_id


def test_a_whole_run_read_of_a_wide_fan_out_returns_the_bound_and_says_what_it_left_out(
        r: redis.Redis, redis_url: str, project: Project) -> None:
    run_id = wide_run(r, redis_url, project)  # numbers, then WIDE items of echo: WIDE + 1 attempts

    first = read_logs(r, KEYS, run_id)
    assert len(first.attempts) == MAX_ATTEMPTS
    assert first.omitted is not None and (first.omitted.attempts, first.omitted.skip) == (WIDE + 1 - MAX_ATTEMPTS,
                                                                                          MAX_ATTEMPTS)
    body = first.to_dict()["omitted"]
    assert body["attempts"] == 6 and "skip=100" in body["hint"] and "task=" in body["hint"]

    rest = read_logs(r, KEYS, run_id, skip=first.omitted.skip)
    assert rest.omitted is None and [a.node for a in rest.attempts] == [f"echo[{i}]" for i in range(99, WIDE)]
    one_task = read_logs(r, KEYS, run_id, "echo")
    assert len(one_task.attempts) == MAX_ATTEMPTS and one_task.omitted is not None
    assert one_task.omitted.attempts == WIDE - MAX_ATTEMPTS


def test_a_follower_follows_at_most_the_bound_and_says_so_once(r: redis.Redis, redis_url: str,
                                                              project: Project) -> None:
    run_id = wide_run(r, redis_url, project)
    follower = LogFollower(run_id)

    news = follower.poll(r, KEYS)

    notices = [item for item in news if isinstance(item, Notice)]
    assert [n.omitted for n in notices] == [WIDE + 1 - MAX_ATTEMPTS] and "skip=100" in notices[0].text
    followed = {item.log.node for item in news if isinstance(item, Lines)}
    assert len(followed) == MAX_ATTEMPTS - 1 and f"echo[{WIDE - 1}]" not in followed, "numbers logs nothing"
    assert isinstance(news[-1], End) and follower.ended


def test_one_read_stays_within_its_byte_budget_reading_whole_attempts_in_order(r: redis.Redis) -> None:
    cap = LogCap(max_lines=100, max_bytes=100_000)
    for node in ("a", "b", "c"):
        storage.append(r, KEYS, "run", node, 1, ["x" * 999] * 2, cap=cap, ttl_s=60)
    wanted = [(node, 1, 0) for node in ("a", "b", "c")]

    assert [log.node for log in storage.read(r, KEYS, "run", wanted, max_bytes=4_000)] == ["a", "b"]
    assert [log.node for log in storage.read(r, KEYS, "run", wanted, max_bytes=10)] == ["a"], \
        "the first always: one log is within its cap"
    assert len(storage.read(r, KEYS, "run", wanted)) == 3


# -- an attempt the engine stopped while its worker ran it ------------------------------------------


def test_a_follower_waits_for_the_last_lines_of_an_attempt_cancelled_while_it_ran(
        r: redis.Redis, redis_url: str, project: Project) -> None:
    stack = stack_for(r, redis_url, project)
    run_id = derive_run_id("slow", "/orch/client", stack.emit("t.slow", None))
    stack.engine.step(block=False)
    shipper = LogShipper(r, KEYS, cap=LogCap(), ttl_s=60)
    buffer = shipper.open(run_id, "waits", 1)  # as the worker running attempt 1 does
    buffer.add("working")
    follower = LogFollower(run_id)
    wait_for(lambda: any(isinstance(item, Lines) for item in follower.poll(r, KEYS)), 30, "the first line")

    request(r, KEYS, stack.engine.store, "cancel", run_id)
    stack.engine.step(block=False)
    run = stack.engine.store.get(run_id)
    assert run is not None and run.status is RunStatus.CANCELLED and run.tasks["waits"].state is TaskState.CANCELLED
    assert not any(isinstance(item, End) for item in follower.poll(r, KEYS)), "the worker has not closed the log"

    buffer.add("attempt 1 failed: TaskCancelled: stopped")  # the worker noticed, after the engine's stop
    shipper.close(buffer)
    last = follower.poll(r, KEYS)

    assert [line for item in last if isinstance(item, Lines) for line in item.log.lines] == \
        ["attempt 1 failed: TaskCancelled: stopped"]
    assert isinstance(last[-1], End) and last[-1].status == "cancelled" and follower.ended


def test_a_follower_stops_waiting_for_a_stopped_attempt_whose_log_is_never_closed(
        r: redis.Redis, redis_url: str, project: Project) -> None:
    stack = stack_for(r, redis_url, project)
    run_id = derive_run_id("slow", "/orch/client", stack.emit("t.slow", None))
    stack.engine.step(block=False)
    storage.append(r, KEYS, run_id, "waits", 1, ["working"], cap=LogCap(), ttl_s=60)  # then the worker died
    request(r, KEYS, stack.engine.store, "cancel", run_id)
    stack.engine.step(block=False)
    follower = LogFollower(run_id, cancel_grace_s=0.5)

    assert not any(isinstance(item, End) for item in follower.poll(r, KEYS))
    wait_for(lambda: any(isinstance(item, End) for item in follower.poll(r, KEYS)), 30, "the grace to end")
