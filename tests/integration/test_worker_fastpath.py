"""⑥ The fast worker path on a real Redis: jobs created as the engine creates them, run in this process
(burst mode) or by `orch worker` processes, counted in Redis commands, recovered when a worker dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis

from executors.dispatch import RQDispatcher
from executors.fastpath import job_key, queue_key
from executors.worker import run_worker
from orchestrator.cli.wiring import load_project
from orchestrator.project import Project
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.workflows.advance import Dispatch
from orchestrator.workflows.records import RecordKind, TaskRecord
from orchestrator.workflows.runs import job_id

from ..helpers import wait_for
from ..projects import make_project

WORKFLOWS = {
    "tasks": """
        import os
        import signal
        import time
        from orchestrator import task, workflow

        @task
        def noop(value=None):
            return value

        @task
        def pid():
            return os.getpid()

        @task
        def nap(seconds: float):
            time.sleep(seconds)
            return "rested"

        @task
        def stubborn(seconds: float):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    time.sleep(0.05)
                except BaseException:  # even the runner's time limit
                    pass
            return "never"

        @task
        def die():
            os.kill(os.getpid(), signal.SIGKILL)

        @workflow
        def all_of_them():
            noop()

        # one workflow per task, its arguments parameters: a job carries their values (its slots)
        @workflow
        def call_noop(value=None):
            noop(value)

        @workflow
        def call_pid():
            pid.with_options(timeout_s=0.5)()

        @workflow
        def call_nap(seconds):
            nap(seconds)

        @workflow
        def call_stubborn(seconds):
            stubborn.with_options(timeout_s=0.5)(seconds)

        @workflow
        def call_die():
            die()
    """
}
KEYS = Keys()
SIMPLE_WORKER_MIN_COMMANDS = 15  # RQ 3.0's SimpleWorker spends ~21 per job (PERFORMANCE.md); measured below


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return load_project(make_project(tmp_path / "project", workflows=WORKFLOWS))


@pytest.fixture
def fast_settings(redis_url: str, project: Project) -> Settings:
    return Settings(redis_url=redis_url, project=project.root, worker_heartbeat_s=0.2, worker_heartbeat_ttl_s=1.0)


def dispatch(r: redis.Redis, settings: Settings, tasks: list[tuple[str, list[Any]]], *, queue: str = "default",
             prefix: str = "run", timeout_s: float | None = None) -> list[Dispatch]:
    """Queue one job per (task, args) of workflow call_<task> the way the engine does: RQDispatcher.dispatch
    inside a MULTI (a task the project lacks gets a version no worker has)."""
    versions = {name: wf.spec.digest for name, wf in load_project(settings.project).workflows.items()}
    items = [Dispatch(run_id=f"{prefix}{i:04d}", workflow=f"call_{name}", version=versions.get(f"call_{name}", "0"),
                      node=name, task=name, attempt=1, queue=queue, job_id=job_id(f"{prefix}{i:04d}", name, 1),
                      args=args, timeout_s=timeout_s)
             for i, (name, args) in enumerate(tasks)]
    with r.pipeline() as pipe:
        pipe.multi()
        RQDispatcher(r, settings).dispatch(pipe, items)
        pipe.execute()
    return items


def records(r: redis.Redis) -> dict[str, list[TaskRecord]]:
    """The results stream, by run id."""
    by_run: dict[str, list[TaskRecord]] = defaultdict(list)
    for _, fields in r.xrange(KEYS.results):
        record = TaskRecord.from_fields(fields)
        by_run[record.run].append(record)
    return by_run


def commands(r: redis.Redis) -> int:
    """Commands Redis has run so far (INFO commandstats, Lua's inner commands included)."""
    return sum(int(v["calls"]) for k, v in r.info("commandstats").items() if k.startswith("cmdstat_"))


def measure(r: redis.Redis, action: Any) -> int:
    before = commands(r)
    action()
    return commands(r) - before - 2  # the two INFO calls


def test_the_fast_path_runs_500_jobs_in_far_fewer_commands_than_rqs_simple_worker(
        r: redis.Redis, fast_settings: Settings, project: Project) -> None:
    dispatch(r, fast_settings, [("noop", [i]) for i in range(500)], prefix="fast")
    fast = measure(r, lambda: run_worker(r, fast_settings, project, ["default"], burst=True))

    by_run = records(r)
    assert len(by_run) == 500
    for run, reports in by_run.items():
        assert [x.kind for x in reports] == [RecordKind.STARTED, RecordKind.SUCCEEDED], run
        assert reports[1].result == int(run.removeprefix("fast"))
    finished = r.hmget(job_key(job_id("fast0007", "noop", 1)), ["status", "started_at", "ended_at", "worker_name"])
    assert finished[0] == b"finished" and all(finished), "the RQ job hash says how it went"
    assert 0 < r.ttl(job_key(job_id("fast0007", "noop", 1))) <= fast_settings.job_result_ttl_s
    assert r.llen(queue_key("orch.default")) == 0 and r.zcard("rq:wip:orch.default") == 0
    assert r.zcard("rq:finished:orch.default") == 500
    assert r.zcard(KEYS.workers) == 0 and not r.keys("orch:worker:*"), "the worker deregistered"

    r.delete(KEYS.results)
    dispatch(r, fast_settings, [("noop", [i]) for i in range(100)], prefix="simple")
    simple = measure(r, lambda: run_worker(r, fast_settings, project, ["default"], burst=True, engine="rq"))
    assert len(records(r)) == 100

    fast_per_job, simple_per_job = fast / 500, simple / 100
    print(f"\nRedis commands per job: fast path {fast_per_job:.1f}, RQ SimpleWorker {simple_per_job:.1f} "
          "(both including the runner's two XADDs)")
    assert simple_per_job >= SIMPLE_WORKER_MIN_COMMANDS
    assert fast_per_job <= 0.6 * simple_per_job


def test_a_failing_task_fails_its_rq_job_and_a_forked_queue_runs_tasks_in_a_child_killed_at_timeout(
        r: redis.Redis, fast_settings: Settings, project: Project) -> None:
    dispatch(r, fast_settings, [("pid", []), ("stubborn", [30]), ("nope", [])], queue="iso", timeout_s=0.5)

    run_worker(r, fast_settings, project, ["iso"], burst=True, fork_queues=("iso",))

    by_run = records(r)
    forked_pid = by_run["run0000"][-1].result
    assert isinstance(forked_pid, int) and forked_pid != os.getpid(), "the task ran in a forked child"
    killed = [x for x in by_run["run0001"] if x.kind is RecordKind.FAILED]
    assert [x.error_type for x in killed][-1] == "TaskTimeout", killed
    assert [x.kind for x in by_run["run0002"]] == [RecordKind.FAILED], "an unknown task fails without running"
    statuses = [r.hget(job_key(d), "status") for d in (job_id("run0000", "pid", 1), job_id("run0001", "stubborn", 1))]
    assert statuses == [b"finished", b"failed"]
    assert r.zcard("rq:failed:orch.iso") == 2


def worker_process(settings: Settings, tmp: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(ORCH_REDIS_URL=str(settings.redis_url), ORCH_PROJECT=str(settings.project),
               ORCH_WORKER_HEARTBEAT_S=str(settings.worker_heartbeat_s),
               ORCH_WORKER_HEARTBEAT_TTL_S=str(settings.worker_heartbeat_ttl_s), PYTHONUNBUFFERED="1")
    log = open(tmp / f"worker-{time.monotonic_ns()}.log", "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen([sys.executable, "-m", "orchestrator", "worker", *args], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    return process


def heartbeat(r: redis.Redis, process: subprocess.Popen[bytes]) -> dict[str, str]:
    name = f"{os.uname().nodename}-{process.pid}"
    return {k.decode(): v.decode() for k, v in r.hgetall(KEYS.worker(name)).items()}


def test_heartbeat_while_running_and_none_after_sigterm_which_finishes_the_task_and_hands_back_the_rest(
        r: redis.Redis, fast_settings: Settings, tmp_path: Path) -> None:
    worker = worker_process(fast_settings, tmp_path, "--prefetch", "10")
    try:
        wait_for(lambda: heartbeat(r, worker), 20, "the worker's heartbeat")
        beat = heartbeat(r, worker)
        assert (beat["pid"], beat["queues"], beat["engine"], beat["state"]) == (str(worker.pid), "default", "fast", "idle")
        assert r.sismember("rq:workers", f"rq:worker:{beat['name']}"), "rq info lists it"

        dispatch(r, fast_settings, [("nap", [1.5])] + [("noop", [i]) for i in range(5)])
        wait_for(lambda: heartbeat(r, worker).get("task") == "nap", 10, "the heartbeat to show the running task")
        beat = heartbeat(r, worker)
        assert (beat["state"], beat["run"], beat["node"]) == ("busy", "run0000", "nap")
        assert r.llen(KEYS.worker_claimed(beat["name"])) == 6, "it holds the nap and the five it claimed with it"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()

    assert records(r)["run0000"][-1].result == "rested", "it finished the task it was running"
    assert r.lrange(queue_key("orch.default"), 0, -1) == [job_id(f"run{i:04d}", "noop", 1).encode()
                                                          for i in range(1, 6)], "the rest went back, in order"
    assert not r.keys("orch:worker:*") and r.zcard(KEYS.workers) == 0 and r.scard("rq:workers") == 0


def test_recover_hands_back_the_claimed_jobs_of_a_sigkilled_worker_and_another_worker_runs_them(
        r: redis.Redis, fast_settings: Settings, project: Project, tmp_path: Path) -> None:
    worker = worker_process(fast_settings, tmp_path, "--prefetch", "20")
    wait_for(lambda: heartbeat(r, worker), 20, "the worker's heartbeat")
    name = heartbeat(r, worker)["name"]
    dispatcher = RQDispatcher(r, fast_settings)
    dispatch(r, fast_settings, [("die", [])] + [("noop", [i]) for i in range(10)])  # `die` SIGKILLs its worker
    assert worker.wait(20) == -signal.SIGKILL
    held = [job_id(f"run{i:04d}", "noop", 1) for i in range(1, 11)]
    assert [i.decode() for i in r.lrange(KEYS.worker_claimed(name), 0, -1)] == [job_id("run0000", "die", 1), *held]

    assert dispatcher.recover() == [], "nothing moves while its heartbeat lives"
    wait_for(lambda: not r.exists(KEYS.worker(name)), 10, "the dead worker's heartbeat to expire")
    assert dispatcher.recover() == held
    assert r.lrange(queue_key("orch.default"), 0, -1) == [i.encode() for i in held]
    assert not r.exists(KEYS.worker_claimed(name)) and r.zscore(KEYS.workers, name) is None
    assert r.hget(job_key(job_id("run0000", "die", 1)), "status") == b"failed"
    lost = records(r)["run0000"]
    assert [(x.kind, x.error_type) for x in lost] == [(RecordKind.STARTED, None), (RecordKind.FAILED, "WorkerLost")]

    run_worker(r, fast_settings, project, ["default"], burst=True)
    by_run = records(r)
    assert all(by_run[f"run{i:04d}"][-1].kind is RecordKind.SUCCEEDED for i in range(1, 11))
    assert dispatcher.recover() == []


def test_a_worker_of_several_queues_waits_on_all_of_them_and_a_second_sigterm_stops_it_at_once(
        r: redis.Redis, fast_settings: Settings, tmp_path: Path) -> None:
    worker = worker_process(fast_settings, tmp_path, "--queues", "a,b")
    try:
        wait_for(lambda: heartbeat(r, worker), 20, "the worker's heartbeat")
        name = heartbeat(r, worker)["name"]
        dispatch(r, fast_settings, [("noop", ["b"])], queue="b", prefix="b")
        wait_for(lambda: len(records(r).get("b0000", [])) == 2, 10, "the job on queue b to run")
        dispatch(r, fast_settings, [("noop", ["a"])], queue="a", prefix="a")
        wait_for(lambda: len(records(r).get("a0000", [])) == 2, 10, "the job on queue a to run")

        dispatch(r, fast_settings, [("nap", [30])], queue="a", prefix="nap")
        wait_for(lambda: heartbeat(r, worker).get("task") == "nap", 10, "the long task to start")
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert worker.poll() is None, "the first SIGTERM lets the task finish"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 1, "the second stops it at once"
    finally:
        if worker.poll() is None:
            worker.kill()

    assert [(x.kind, x.error_type) for x in records(r)["nap0000"]] == [(RecordKind.STARTED, None),
                                                                        (RecordKind.FAILED, "WorkerLost")]
    assert r.hget(job_key(job_id("nap0000", "nap", 1)), "status") == b"failed"
    assert not r.exists(KEYS.worker(name), KEYS.worker_claimed(name)) and r.zcard(KEYS.workers) == 0
    assert r.llen(queue_key("orch.a")) == r.llen(queue_key("orch.b")) == 0


def test_a_worker_presumed_dead_while_stopped_hands_back_what_it_held_and_runs_nothing_twice(
        r: redis.Redis, fast_settings: Settings, tmp_path: Path) -> None:
    worker = worker_process(fast_settings, tmp_path, "--prefetch", "5")
    try:
        wait_for(lambda: heartbeat(r, worker), 20, "the worker's heartbeat")
        name = heartbeat(r, worker)["name"]
        dispatch(r, fast_settings, [("nap", [1.5])] + [("noop", [i]) for i in range(4)])
        wait_for(lambda: heartbeat(r, worker).get("task") == "nap", 10, "the nap to start")
        worker.send_signal(signal.SIGSTOP)
        wait_for(lambda: not r.exists(KEYS.worker(name)), 10, "its heartbeat to expire")
        held = RQDispatcher(r, fast_settings).recover()
        assert held == [job_id(f"run{i:04d}", "noop", 1) for i in range(1, 5)]
        worker.send_signal(signal.SIGCONT)

        wait_for(lambda: all(len(records(r).get(f"run{i:04d}", [])) == 2 for i in range(1, 5)), 10,
                 "the handed-back jobs to run")
        wait_for(lambda: r.llen(KEYS.worker_claimed(name)) == 0 and heartbeat(r, worker).get("state") == "idle",
                 10, "the worker to settle")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    by_run = records(r)
    for i in range(1, 5):
        assert [x.kind for x in by_run[f"run{i:04d}"]] == [RecordKind.STARTED, RecordKind.SUCCEEDED], "once each"
    assert [x.kind for x in by_run["run0000"]][-2:] == [RecordKind.FAILED, RecordKind.SUCCEEDED], (
        "the nap was reported lost, then (it was only stopped) finished: the engine ignores the stale report")


def test_a_dead_workers_started_job_fails_with_its_record_in_one_step(r: redis.Redis, fast_settings: Settings) -> None:
    """release.lua alone (no second round trip) both fails the job and writes its attempt's WorkerLost record."""
    from executors.fastpath import release
    from orchestrator.state.lua import Scripts

    (item,) = dispatch(r, fast_settings, [("nap", [30])])
    r.lmove(queue_key("orch.default"), KEYS.worker_claimed("ghost"), "LEFT", "RIGHT")  # claimed by "ghost"...
    r.hset(job_key(item.job_id), "status", "started")  # ...which started it, then died without a heartbeat
    r.zadd(KEYS.workers, {"ghost": 1})

    requeued, failed = release(r, Scripts(r), KEYS, "ghost", "dead", "worker ghost was lost")

    assert (requeued, failed) == ([], [item.job_id])
    assert r.hget(job_key(item.job_id), "status") == b"failed"
    (record,) = records(r)[item.run_id]
    assert (record.kind, record.node, record.attempt, record.error_type, record.worker) == (
        RecordKind.FAILED, "nap", 1, "WorkerLost", "ghost")
