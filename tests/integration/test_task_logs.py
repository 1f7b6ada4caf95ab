"""Task logs in a real Redis, written by real workers: visible while the task runs, one log per attempt,
capped with a marker, followed across retries, and gone with their run."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from executors.logship import LogShipper
from executors.worker import run_worker
from orchestrator.cli.wiring import load_project
from orchestrator.project import Project
from orchestrator.settings import Settings
from orchestrator.state import logs as storage
from orchestrator.state.keys import Keys
from orchestrator.state.logs import LogCap
from orchestrator.state.steer import request
from orchestrator.workflows.logs import End, Lines, LogFollower, TaskProgress, read_logs
from orchestrator.workflows.runs import RunStatus, derive_run_id

from ..helpers import RedisServer, free_port, wait_for
from ..inproc import Stack
from ..projects import make_project

KEYS = Keys()
RULES = """\
rules:
  - {name: slow, type: t.slow, workflow: slow, params: {flag: "{{ data.flag }}"}}
  - {name: retried, type: t.retry, workflow: retried}
  - {name: loud, type: t.loud, workflow: loud, params: {n: "{{ data.n }}"}}
  - {name: isolated, type: t.iso, workflow: isolated}
  - {name: broken, type: t.broken, workflow: broken}
"""
WORKFLOWS = {"logging_flows": """\
    import os
    import time
    from pathlib import Path

    from orchestrator import task, workflow
    from orchestrator.context import current

    @task
    def waits(flag: str) -> str:
        current().logger.info("step one")
        deadline = time.monotonic() + 60  # the test creates the flag; this only bounds a broken test
        while not Path(flag).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        current().logger.info("step two")
        return "done"

    @task(retries={"max_retries": 1, "backoff_s": 0})
    def flaky() -> str:
        ctx = current()
        ctx.logger.info("attempt %d here", ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("try again")
        return "ok"

    @task
    def chatty(n: int) -> int:
        for i in range(n):
            current().logger.info("line %d", i)
        return n

    @task(queue="iso")
    def in_child() -> int:
        current().logger.info("from process %d", os.getpid())
        return os.getpid()

    @task
    def fails() -> None:
        current().logger.info("trying")
        raise ValueError("no")

    @workflow
    def broken():
        fails()

    @workflow
    def isolated():
        in_child()

    @workflow
    def slow(flag: str):
        waits(flag)

    @workflow
    def retried():
        flaky()

    @workflow
    def loud(n: int):
        chatty(n)
"""}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return load_project(make_project(tmp_path_factory.mktemp("logs"), rules=RULES, workflows=WORKFLOWS))


def stack_for(r: redis.Redis, redis_url: str, project: Project, **settings: object) -> Stack:
    return Stack(r, Settings(redis_url=redis_url, project=project.root, **settings), project)


def texts(found: list[Lines | TaskProgress | End]) -> list[str]:
    return [line for item in found if isinstance(item, Lines) for line in item.log.text()]


def messages(lines: list[str]) -> list[str]:
    """The messages of the task's logger (`12:00:00.123 INFO orch.task.wf.node: message`), without the
    worker's own notes (a task off the main thread has no time limit, and its log says so)."""
    return [line.split(": ", 1)[1] for line in lines if " orch.task." in line]


# -- live, with a worker running the task in another thread -------------------------------------------


@pytest.fixture
def flag(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "go"
    yield path
    path.touch()  # a failed test never leaves a worker thread waiting


def test_lines_are_visible_while_the_task_runs_and_a_follower_sees_them_and_the_end(
        r: redis.Redis, redis_url: str, project: Project, flag: Path) -> None:
    stack = stack_for(r, redis_url, project)
    run_id = derive_run_id("slow", "/orch/client", stack.emit("t.slow", {"flag": str(flag)}))
    stack.engine.step(block=False)
    follower = LogFollower(run_id)
    worker_client = redis.Redis.from_url(redis_url)
    worker = threading.Thread(target=run_worker, args=(worker_client, stack.settings, project, project.queues),
                              kwargs={"burst": True, "name": "live-worker"})
    worker.start()
    try:
        seen = wait_for(lambda: messages(read_logs(r, KEYS, run_id).attempts[0].lines), 30,
                        "the first line in Redis while the task waits")
        assert seen == ["step one"]
        assert worker.is_alive() and not flag.exists(), "the task is still running"
        news = wait_for(lambda: texts(follower.poll(r, KEYS)), 30, "the follower to see the first line")
        assert messages(news) == ["step one"] and not follower.ended
    finally:
        flag.touch()
        worker.join(60)
        worker_client.close()
    stack.drain()

    rest = follower.poll(r, KEYS)
    assert messages(texts(rest)) == ["step two"], "each line once: the follower read on from where it was"
    assert rest[-1] == End("succeeded", rest[-1].duration_s) and follower.ended
    assert ("waits", 1, "succeeded") in [(p.node, p.attempt, p.state) for p in rest if isinstance(p, TaskProgress)]
    assert messages(read_logs(r, KEYS, run_id).attempts[0].lines) == ["step one", "step two"]


# -- attempts ----------------------------------------------------------------------------------------


def test_each_attempt_has_its_own_log_and_a_follower_reads_both_across_the_retry(
        r: redis.Redis, redis_url: str, project: Project) -> None:
    stack = stack_for(r, redis_url, project)
    run_id = derive_run_id("retried", "/orch/client", stack.emit("t.retry", None))
    follower = LogFollower(run_id)
    seen: list[Lines | TaskProgress | End] = []
    for _ in range(10):  # step by step, polling in between, as a live follower would
        stack.engine.step(block=False)
        seen += follower.poll(r, KEYS)
        run_worker(r, stack.settings, project, project.queues, burst=True)
        seen += follower.poll(r, KEYS)
        if follower.ended:
            break

    run = stack.engine.store.get(run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED and run.tasks["flaky"].attempt == 2
    first, second = (read_logs(r, KEYS, run_id, "flaky", n).attempts[0] for n in (1, 2))
    assert (first.attempt, messages(first.lines)) == (1, ["attempt 1 here"])
    assert (second.attempt, messages(second.lines)) == (2, ["attempt 2 here"])
    assert any(line.endswith("ERROR orch.worker: attempt 1 failed: ConnectionError: try again") for line in first.lines)
    assert "Traceback (most recent call last):" in first.lines, "the error ends the failed attempt's log"
    assert not any("failed" in line for line in second.lines)
    assert [a.attempt for a in read_logs(r, KEYS, run_id).attempts] == [2], "by default: the latest attempt"
    followed = [(item.log.attempt, messages(item.log.lines)) for item in seen if isinstance(item, Lines)]
    assert followed == [(1, ["attempt 1 here"]), (2, ["attempt 2 here"])]
    assert isinstance(seen[-1], End) and seen[-1].status == "succeeded"


def test_a_task_in_a_forked_child_ships_its_own_log_after_one_ran_in_the_worker_itself(
        r: redis.Redis, redis_url: str, project: Project) -> None:
    stack = stack_for(r, redis_url, project)
    in_worker = derive_run_id("loud", "/orch/client", stack.emit("t.loud", {"n": 2}))
    in_child = derive_run_id("isolated", "/orch/client", stack.emit("t.iso", None))
    stack.engine.step(block=False)

    run_worker(r, stack.settings, project, ["default", "iso"], burst=True, fork_queues=("iso",))
    stack.drain()

    child = stack.engine.store.get(in_child)
    assert child is not None and child.status is RunStatus.SUCCEEDED
    pid = child.tasks["in_child"].result
    assert pid != os.getpid(), "it ran in a child process"
    assert messages(read_logs(r, KEYS, in_worker).attempts[0].lines) == ["line 0", "line 1"]
    assert messages(read_logs(r, KEYS, in_child).attempts[0].lines) == [f"from process {pid}"]


# -- the cap -----------------------------------------------------------------------------------------


def test_a_log_over_its_cap_keeps_its_newest_lines_after_a_marker_saying_how_many_went(
        r: redis.Redis, redis_url: str, project: Project) -> None:
    stack = stack_for(r, redis_url, project, task_log_max_lines=10)
    run_id = derive_run_id("loud", "/orch/client", stack.emit("t.loud", {"n": 25}))
    stack.drain()

    (log,) = read_logs(r, KEYS, run_id).attempts
    assert messages(log.lines) == [f"line {i}" for i in range(15, 25)]
    assert (log.first, log.dropped, log.next) == (15, 15, 25)
    assert log.text()[0].startswith("[… 15 earlier line(s) dropped (") and "newest 10 lines" in log.text()[0]
    assert r.llen(KEYS.task_log(run_id, "chatty", 1)) == 11, "the header and the lines kept, no more"


def test_a_reader_that_fell_behind_gets_a_marker_for_what_it_missed_and_each_line_once(r: redis.Redis) -> None:
    cap = LogCap(max_lines=5, max_bytes=10_000)
    storage.append(r, KEYS, "run", "n", 1, [f"a{i}" for i in range(3)], cap=cap, ttl_s=60)
    (first,) = storage.read(r, KEYS, "run", [("n", 1, 0)])
    storage.append(r, KEYS, "run", "n", 1, [f"b{i}" for i in range(6)], cap=cap, ttl_s=60)

    (behind,) = storage.read(r, KEYS, "run", [("n", 1, first.next)])
    (fresh,) = storage.read(r, KEYS, "run", [("n", 1, 0)])

    assert first.lines == ["a0", "a1", "a2"]
    assert (behind.first, behind.dropped, behind.lines) == (4, 1, ["b1", "b2", "b3", "b4", "b5"])
    assert behind.truncated is not None and behind.truncated.startswith("[… 1 earlier line(s) dropped")
    assert (fresh.dropped, fresh.dropped_bytes) == (4, len("a0a1a2b0"))


def test_a_header_that_is_not_ours_is_read_as_nothing_dropped(r: redis.Redis) -> None:
    key = KEYS.task_log("run", "n", 1)
    r.rpush(key, b'{"dropped": "lots", "max_lines": -3}', b"one", b"two")

    (log,) = storage.read(r, KEYS, "run", [("n", 1, 0)])
    storage.append(r, KEYS, "run", "n", 1, ["three"], cap=LogCap(), ttl_s=60)

    assert (log.lines, log.dropped, log.max_lines) == (["one", "two"], 0, 0)
    assert r.lrange(key, 1, -1) == [b"one", b"two", b"three"]


# -- lifetime ----------------------------------------------------------------------------------------


def test_a_new_log_gets_its_own_ttl_and_a_log_that_has_one_keeps_it(r: redis.Redis) -> None:
    storage.append(r, KEYS, "run", "n", 1, ["late"], cap=LogCap(), ttl_s=600)
    key = KEYS.task_log("run", "n", 1)
    assert 590 < r.ttl(key) <= 600, "never permanent, even when written after its run finished"

    r.expire(key, 30)  # as the engine does when the run finishes
    storage.append(r, KEYS, "run", "n", 1, ["later"], cap=LogCap(), ttl_s=600)
    assert 0 < r.ttl(key) <= 30


def test_logs_go_with_their_run_when_its_retention_ends(r: redis.Redis, redis_url: str, project: Project) -> None:
    stack = stack_for(r, redis_url, project, run_retention_s=3)
    run_id = derive_run_id("retried", "/orch/client", stack.emit("t.retry", None))
    stack.drain()
    logs = [KEYS.task_log(run_id, "flaky", n) for n in (1, 2)]

    run_ttl_ms = r.pttl(KEYS.run(run_id))
    assert 0 < run_ttl_ms <= 3000, "the finished run expires after the retention"
    assert all(abs(r.pttl(key) - run_ttl_ms) < 500 for key in logs), "each attempt's log with it, not the 6 s a " \
                                                                      "new log gets"
    wait_for(lambda: r.exists(KEYS.run(run_id), *logs) == 0, 15, "the run and its logs to expire")


def test_a_finished_run_retried_keeps_its_logs_until_it_finishes_again(r: redis.Redis, redis_url: str,
                                                                       project: Project) -> None:
    stack = stack_for(r, redis_url, project)
    run_id = derive_run_id("broken", "/orch/client", stack.emit("t.broken", None))
    stack.drain()
    first = KEYS.task_log(run_id, "fails", 1)
    assert r.ttl(first) > 0, "the failed run's logs expire with it"

    request(r, KEYS, stack.engine.store, "retry", run_id)
    stack.engine.step(block=False)
    assert r.ttl(KEYS.run(run_id)) == r.ttl(first) == -1, "running again: kept, like the run"
    stack.drain()

    assert [a.attempt for a in read_logs(r, KEYS, run_id, "fails", 1).attempts] == [1]
    assert r.ttl(first) > 0 and r.ttl(KEYS.task_log(run_id, "fails", 2)) > 0


# -- Redis trouble -----------------------------------------------------------------------------------


def test_a_stalled_redis_never_blocks_the_lines_a_task_logs_and_they_arrive_when_it_is_back() -> None:
    server = RedisServer()
    client = redis.Redis.from_url(server.url)
    shipper = LogShipper(client, KEYS, cap=LogCap(max_lines=50, max_bytes=10_000), ttl_s=60, every_s=0.05)
    buffer = shipper.open("run", "n", 1)
    try:
        buffer.add("before")
        wait_for(lambda: client.llen(KEYS.task_log("run", "n", 1)) == 2, 10, "the first line shipped")
        os.kill(server.process.pid, signal.SIGSTOP)  # Redis stops answering: the shipper's next call hangs
        for i in range(200):  # would never return if adding a line waited for Redis
            buffer.add(f"while stalled {i}")
        os.kill(server.process.pid, signal.SIGCONT)
        shipper.close(buffer)
        (log,) = storage.read(client, KEYS, "run", [("n", 1, 0)])
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        client.close()
        server.stop()

    assert log.lines[-1] == "while stalled 199" and len(log.lines) == 50
    assert log.dropped == 151 and log.truncated is not None


def test_logs_that_cannot_be_written_never_fail_the_attempt_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=1)
    shipper = LogShipper(nowhere, KEYS, cap=LogCap(), ttl_s=60)
    buffer = shipper.open("run", "n", 1)
    buffer.add("lost line")

    with caplog.at_level(logging.WARNING, logger="executors.logship"):
        shipper.close(buffer)  # no exception: the attempt's record goes on

    assert "task logs cannot be written to Redis" in caplog.text
