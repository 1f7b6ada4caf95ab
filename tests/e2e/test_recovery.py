"""Recovery with real processes killed: no task lost, at most one duplicate execution per kill, effects
exactly once through the idempotency key."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import psutil

from ..helpers import RedisServer, wait_for
from ..projects import make_project
from .conftest import Processes, orch, orch_env, orch_json

FLOWS = '''\
import os
import random
import time

import redis

from orchestrator import task, workflow
from orchestrator.context import current

_redis = None


def _client():
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ["ORCH_REDIS_URL"])
    return _redis


@task(retries={"max_retries": 10, "backoff_s": 0.05, "max_delay_s": 0.5})
def effect(item: int) -> int:
    ctx = current()
    client = _client()
    client.incr(f"test:exec:{ctx.key}")                  # every execution, duplicates included
    time.sleep(random.uniform(0.005, 0.03))
    client.set(f"test:effect:{ctx.key}", item, nx=True)   # the effect, made exactly-once by the key
    return item


@task
def items(n: int) -> list:
    return list(range(n))


@task
def count(values: list) -> int:
    return len(values)


@workflow
def many(n: int):
    count(effect.map(items(n)))
'''

RULES = """\
rules:
  - {name: many, type: test.many, workflow: many, params: {n: "{{ data.n }}"}}
"""

FAST_RECOVERY = {"ORCH_WORKER_HEARTBEAT_S": "0.3", "ORCH_WORKER_HEARTBEAT_TTL_S": "1.5",
                 "ORCH_ENGINE_MAINTENANCE_INTERVAL_S": "0.5"}


def worker_pids(pool: psutil.Process) -> list[int]:
    return [c.pid for c in pool.children(recursive=True) if "worker" in " ".join(c.cmdline())]


def test_killing_workers_loses_no_task_and_duplicates_at_most_one_execution_per_kill(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", rules=RULES, workflows={"flows": FLOWS})
    server = RedisServer()
    env = orch_env(server.url, project, **FAST_RECOVERY)
    procs = Processes(env, tmp_path)
    client = server.client()
    runs, tasks_per_run, kills = 4, 250, 0
    try:
        procs.start("engine", "engine")
        pool = psutil.Process(procs.start("workers", "worker", "--concurrency", "2").pid)
        wait_for(lambda: len(worker_pids(pool)) == 2 and client.zcard("orch:workers") >= 2, 30, "two workers")
        for i in range(runs):
            orch("emit", "test.many", "--data", json.dumps({"n": tasks_per_run}), "--id", f"many-{i}", env=env)
        started = time.monotonic()
        while len(client.keys("test:effect:*")) < runs * tasks_per_run and time.monotonic() - started < 120:
            time.sleep(random.uniform(0.4, 0.9))
            victims = worker_pids(pool)
            if victims and kills < 10 and len(client.keys("test:effect:*")) < runs * tasks_per_run * 0.9:
                os.kill(random.choice(victims), signal.SIGKILL)
                kills += 1

        def all_finished() -> list[dict[str, object]] | None:
            found = orch_json("runs", "list", "-n", "100", env=env)
            return found if len(found) == runs and all(r["status"] != "running" for r in found) else None

        listed = wait_for(all_finished, 90, "every run to finish", interval_s=0.5)
        elapsed = time.monotonic() - started
        executions = [int(v) for v in client.mget(client.keys("test:exec:*"))]
        effects = len(client.keys("test:effect:*"))
    finally:
        procs.stop_all()
        client.close()
        server.stop()

    total = runs * tasks_per_run
    duplicates = sum(n - 1 for n in executions)
    print(f"\nkill test: {total} tasks, {kills} worker SIGKILLs, {len(executions)} tasks executed, "
          f"{duplicates} duplicate executions, {effects} effects, {elapsed:.1f}s")
    assert kills >= 5
    assert [r["status"] for r in listed] == ["succeeded"] * runs
    assert len(executions) == total and effects == total  # nothing lost; each effect once
    assert duplicates <= kills  # at most one duplicate execution per kill
