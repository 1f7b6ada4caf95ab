"""`orch worker --concurrency N` as a user runs it: a supervisor that keeps N workers alive, kills one whose
task overruns, stops them all on SIGTERM; `orch workers` shows them; `orch worker --engine rq` still works."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.workflows.records import RecordKind

from ..helpers import RedisServer, wait_for
from ..integration.test_worker_fastpath import WORKFLOWS, dispatch, records
from ..projects import make_project
from .conftest import Processes, orch, orch_env, orch_json

pytestmark = pytest.mark.e2e

KEYS = Keys()
FAST_BEATS = {"ORCH_WORKER_HEARTBEAT_S": "0.2", "ORCH_WORKER_HEARTBEAT_TTL_S": "1.5"}


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    project = make_project(tmp_path / "project", workflows=WORKFLOWS)
    server = RedisServer()
    procs = Processes(orch_env(server.url, project, **FAST_BEATS), tmp_path)
    yield server, procs, Settings(redis_url=server.url, project=project)
    procs.stop_all()
    server.stop()


def alive(r: redis.Redis) -> dict[str, dict[str, str]]:
    """Registered workers whose heartbeat lives: name -> heartbeat fields."""
    found = {}
    for raw in r.zrange(KEYS.workers, 0, -1):
        fields = r.hgetall(KEYS.worker(raw.decode()))
        if fields:
            found[raw.decode()] = {k.decode(): v.decode() for k, v in fields.items()}
    return found


def test_a_pool_keeps_its_workers_alive_kills_an_overrunning_task_and_stops_cleanly(setup: Any) -> None:
    server, procs, settings = setup
    r = server.client()
    pool = procs.start("pool", "worker", "--concurrency", "3", "--kill-grace", "0.5")
    workers = wait_for(lambda: len(w := alive(r)) == 3 and w, 30, "three workers to register")
    assert {w["pool"] for w in workers.values()} == {f"{w['host']}-{pool.pid}" for w in workers.values()}
    assert all(w["engine"] == "fast" and w["queues"] == "default" for w in workers.values())

    dispatch(r, settings, [("noop", [i]) for i in range(30)], prefix="warm")
    wait_for(lambda: len(records(r)) == 30 and all(len(x) == 2 for x in records(r).values()), 20, "30 no-op runs")
    listed = orch_json("workers", env=procs.env)
    assert sorted(w["name"] for w in listed["workers"]) == sorted(workers)
    assert sum(w["jobs_done"] for w in listed["workers"]) >= 27  # heartbeats lag by up to one beat
    (queue,) = listed["queues"]
    assert (queue["queue"], queue["queued"], queue["started"], queue["failed"]) == ("default", 0, 0, 0)
    assert sum(m["count"] for m in queue["finished_per_minute"]) == 30, "counted with the records they finished"
    assert "HEARTBEAT" in orch("workers", env=procs.env).stdout

    victim = sorted(workers)[0]
    os.kill(int(workers[victim]["pid"]), signal.SIGKILL)
    wait_for(lambda: victim not in alive(r) and len(alive(r)) == 3, 30, "the pool to replace the killed worker")
    assert r.zscore(KEYS.workers, victim) is None, "the pool released the dead worker at once"

    dispatch(r, settings, [("stubborn", [60])], prefix="slow", timeout_s=0.5)
    wait_for(lambda: any(x.kind is RecordKind.FAILED for x in records(r).get("slow0000", [])), 30,
             "the pool to kill the worker whose task overran")
    failed = [x for x in records(r)["slow0000"] if x.kind is RecordKind.FAILED]
    assert failed[0].error_type == "TaskTimeout" and "past its 0.5 s timeout" in (failed[0].error or "")
    wait_for(lambda: len(alive(r)) == 3, 30, "the pool to replace it")

    assert procs.stop("pool") == 0, procs.log("pool")
    assert not r.keys("orch:worker:*") and r.zcard(KEYS.workers) == 0, "no heartbeats left"
    assert "restarting" in procs.log("pool")
    r.close()


def test_the_stock_rq_engine_still_runs_jobs(setup: Any) -> None:
    server, procs, settings = setup
    r = server.client()
    dispatch(r, settings, [("noop", [i]) for i in range(3)])

    result = orch("worker", "--engine", "rq", "--burst", env=procs.env)

    assert result.returncode == 0
    assert {run: [x.kind for x in xs] for run, xs in records(r).items()} == {
        f"run{i:04d}": [RecordKind.STARTED, RecordKind.SUCCEEDED] for i in range(3)}
    assert r.zcard(KEYS.workers) == 0 and not r.keys("orch:worker:*")
    r.close()
