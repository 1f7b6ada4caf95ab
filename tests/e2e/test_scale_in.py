"""Scale-in and scale-out under load, as KEDA does it to a worker Deployment: one `orch engine` and four
`orch worker` processes (one per pod) work through a ledger of one-task runs; three workers get SIGTERM
mid-run (the HPA removing pods: each finishes the task it runs, puts back the jobs it claimed but had not
started, and exits 0), the last one carries on alone, then three new workers join and everything finishes.
The ledger records every execution of every task by its idempotency key: 0 lost, one run per event, and
0 duplicates, since a graceful stop never abandons a started task. (At-least-once allows more only when a
worker dies without draining, SIGKILL or OOM: its started attempt fails as `WorkerLost` and runs again per
the task's retries. The `sigkill` variant scales in with one of the three SIGKILLed: at most one duplicate.)

CI runs 400 tasks; the issue's full ledger (2,000 tasks) is the same test with ORCH_LEDGER_TASKS=2000:
    ORCH_LEDGER_TASKS=2000 .venv/bin/pytest tests/e2e/test_scale_in.py -s -p no:cacheprovider
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from orchestrator import Client
from orchestrator.settings import Settings
from orchestrator.workflows.runs import derive_run_id

from ..helpers import RedisServer, wait_for
from ..projects import make_project
from .conftest import Processes, orch_env
from .test_worker_pool import alive

pytestmark = pytest.mark.e2e

TASKS = int(os.environ.get("ORCH_LEDGER_TASKS", "400"))
# Heartbeats as in production, shortened: a live worker starved of CPU on a loaded 2-core machine must not
# be taken for dead (that is at-least-once's duplicate, not a scale-in's); the SIGKILLed one is, within 5 s.
BEATS = {"ORCH_WORKER_HEARTBEAT_S": "0.5", "ORCH_WORKER_HEARTBEAT_TTL_S": "5"}
WORKERS, SCALED_IN = 4, 3
SOURCE = "/e2e/scale"
RULES = """
    rules:
      - {name: one, type: test.one, workflow: one, params: {n: "{{ data.n }}"}}
"""
WORKFLOWS = {"ledger": """
    import os
    import time

    import redis

    from orchestrator import task, workflow
    from orchestrator.context import current

    _redis = redis.Redis.from_url(os.environ["ORCH_REDIS_URL"])


    @task(retries=2)
    def record(n: int) -> int:
        _redis.rpush("test:ledger", f"{current().key} {os.getpid()}")  # every execution, duplicates included
        time.sleep(0.02)  # work in flight when the pool shrinks
        return n


    @workflow
    def one(n: int):
        record(n)
"""}


def succeeded(r: redis.Redis, count: float) -> bool:
    return int(r.zcard("orch:runs:status:succeeded")) >= count


@pytest.mark.parametrize("kills", [0, 1], ids=["graceful", "sigkill"])
def test_shrinking_a_pool_from_four_workers_to_one_and_back_loses_and_repeats_nothing(tmp_path: Path,
                                                                                      kills: int) -> None:
    server = RedisServer()
    project = make_project(tmp_path / "project", rules=RULES, workflows=WORKFLOWS)
    procs = Processes(orch_env(server.url, project, ORCH_LIFECYCLE_EVENTS="false",
                               ORCH_ENGINE_MAINTENANCE_INTERVAL_S="0.2", **BEATS), tmp_path)
    r = server.client()
    began = time.monotonic()
    try:
        procs.start("engine", "engine")
        workers = {f"worker-{i}": procs.start(f"worker-{i}", "worker") for i in range(WORKERS)}
        wait_for(lambda: len(alive(r)) == WORKERS, 30, "four workers to register")
        with Client(settings=Settings(redis_url=server.url), source=SOURCE) as client:
            ids = client.emit_many([{"type": "test.one", "id": f"e-{i}", "data": {"n": i}} for i in range(TASKS)])

        wait_for(functools.partial(succeeded, r, TASKS / 4), 120, "a quarter of the runs to succeed",
                 interval_s=0.05)
        busy = {w["pid"] for w in alive(r).values() if w["state"] == "busy"}
        leaving = [name for name in workers if name != "worker-0"]
        for i, name in enumerate(leaving):  # scale-in: the HPA removes three pods at once (and `kills` die)
            workers[name].send_signal(signal.SIGKILL if i < kills else signal.SIGTERM)
        for i, name in enumerate(leaving):
            assert workers[name].wait(60) == (-signal.SIGKILL if i < kills else 0), procs.log(name)
            procs.running.pop(name)
        wait_for(lambda: [w["pid"] for w in alive(r).values()] == [str(workers["worker-0"].pid)], 30,
                 "the three stopped workers to deregister, the last one to stay")
        left_at = int(r.zcard("orch:runs:status:succeeded"))
        assert left_at < TASKS, "scale-in happened with work left"

        wait_for(functools.partial(succeeded, r, left_at + TASKS / 10), 120,
                 "the last worker to carry on alone", interval_s=0.05)
        for i in range(WORKERS, WORKERS + SCALED_IN):  # scale-out: three new pods
            procs.start(f"worker-{i}", "worker")
        wait_for(functools.partial(succeeded, r, TASKS), 180, f"{TASKS} runs to succeed", interval_s=0.1)
        elapsed_s = time.monotonic() - began
        executions = [line.decode().split() for line in r.lrange("test:ledger", 0, -1)]
        runs = {m.decode() for m in r.zrange("orch:runs", 0, -1)}
        failed = int(r.zcard("orch:runs:status:failed"))
        leftover = r.xpending("orch:events", "engine")["pending"]
    finally:
        r.close()
        procs.stop_all()
        server.stop()

    per_task = Counter(key for key, _ in executions)
    per_pid = Counter(pid for _, pid in executions)
    duplicates = sum(n - 1 for n in per_task.values())
    scaled_in = [per_pid[str(workers[name].pid)] for name in leaving]
    print(f"\nscale-in ledger ({kills} SIGKILL): {TASKS} tasks, {len(executions)} executions, {duplicates} duplicates, "
          f"{TASKS - len(per_task)} lost, {elapsed_s:.1f} s; {WORKERS} -> 1 worker at {TASKS // 4}+ succeeded "
          f"({len(busy & {str(workers[n].pid) for n in leaving})} of {SCALED_IN} busy by their heartbeat), "
          f"tasks run by the scaled-in workers {scaled_in}, back to {1 + SCALED_IN} at {left_at + TASKS // 10}+")
    assert runs == {derive_run_id("one", SOURCE, event_id) for event_id in ids}, "exactly one run per event"
    assert failed == 0 and leftover == 0, "every run succeeded, every event acknowledged"
    assert len(per_task) == TASKS, "no task lost"
    assert duplicates <= kills, "a graceful scale-in runs nothing twice; a SIGKILLed worker's attempt may run again"
    assert all(scaled_in), "every scaled-in worker had taken part"
