"""Engines replicated: three `orch engine` processes share the work, two are SIGKILLed at random moments,
and the live ones take over the dead ones' pending entries through their missing heartbeats (the
idle-based reclaim is set to an hour, so only the takeover can finish the work here). A ledger counts
every execution of every task by its idempotency key: 0 lost, one run per (rule, event), at most one
duplicate execution per kill.

CI runs 600 tasks; the issue's full ledger (5,000 tasks) is the same test with ORCH_LEDGER_TASKS=5000:
    ORCH_LEDGER_TASKS=5000 .venv/bin/pytest tests/e2e/test_engine_failover.py -s -p no:cacheprovider
"""

from __future__ import annotations

import functools
import os
import random
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import redis

from orchestrator import Client
from orchestrator.settings import Settings
from orchestrator.workflows.runs import derive_run_id

from ..helpers import RedisServer, wait_for
from ..projects import make_project
from .conftest import Processes, orch_env

pytestmark = pytest.mark.e2e

TASKS = int(os.environ.get("ORCH_LEDGER_TASKS", "600"))
ENGINES, KILLS = 3, 2
SOURCE = "/e2e/ledger"
FAILOVER = {"ORCH_ENGINE_CLAIM_IDLE_S": "3600", "ORCH_ENGINE_BEAT_S": "0.2", "ORCH_ENGINE_DEAD_AFTER_S": "1",
            "ORCH_ENGINE_MAINTENANCE_INTERVAL_S": "0.2", "ORCH_ENGINE_BATCH_SIZE": "50",
            "ORCH_LIFECYCLE_EVENTS": "false"}
RULES = """
    rules:
      - {name: one, type: test.one, workflow: one, params: {n: "{{ data.n }}"}}
"""
WORKFLOWS = {"ledger": """
    import os

    import redis

    from orchestrator import task, workflow
    from orchestrator.context import current

    _redis = redis.Redis.from_url(os.environ["ORCH_REDIS_URL"])


    @task
    def record(n: int) -> int:
        _redis.hincrby("test:ledger", current().key, 1)  # every execution, duplicates included
        return n


    @workflow
    def one(n: int):
        record(n)
"""}


def consumer_name(r: redis.Redis, process: subprocess.Popen[bytes]) -> str:
    """The consumer name of the engine `process` (`engine-<host>-<pid>-<per-start suffix>`)."""
    prefix = f"engine-{socket.gethostname()}-{process.pid}-"
    seen = {m.decode() for m in r.zrange("orch:engines", 0, -1)}
    seen |= {c["name"].decode() for c in r.xinfo_consumers("orch:events", "engine")}
    names = [name for name in seen if name.startswith(prefix)]
    assert len(names) == 1, f"{prefix}*: {names}"
    return names[0]


def started(r: redis.Redis, count: float) -> bool:
    return int(r.zcard("orch:runs")) >= count


def holding(r: redis.Redis, names: list[str]) -> list[str]:
    """The engines among `names` holding pending entries right now."""
    pending = {c["name"].decode(): int(c["pending"]) for c in r.xinfo_consumers("orch:events", "engine")}
    return [name for name in names if pending.get(name, 0) > 0]


def test_three_engines_two_killed_lose_nothing_and_start_one_run_per_event(tmp_path: Path) -> None:
    server = RedisServer()
    project = make_project(tmp_path / "project", rules=RULES, workflows=WORKFLOWS)
    procs = Processes(orch_env(server.url, project, **FAILOVER), tmp_path)
    r = server.client()
    rng = random.Random()
    try:
        engines = {f"engine-{i}": procs.start(f"engine-{i}", "engine") for i in range(ENGINES)}
        procs.start("workers", "worker", "--concurrency", "2")
        wait_for(lambda: r.zcard("orch:engines") == ENGINES, 30, "three engines beating")
        names = {name: consumer_name(r, p) for name, p in engines.items()}
        with Client(settings=Settings(redis_url=server.url), source=SOURCE) as client:
            ids = client.emit_many([{"type": "test.one", "id": f"e-{i}", "data": {"n": i}} for i in range(TASKS)])

        killed: list[str] = []
        busy_kills = 0
        for at in sorted(rng.uniform(0.1, 0.6) for _ in range(KILLS)):  # random moments, by progress
            wait_for(functools.partial(started, r, at * TASKS), 120, f"{at:.0%} of the runs started")
            live = {names[name]: name for name in engines if name not in killed}
            busy = holding(r, list(live))
            victim = live[rng.choice(busy or list(live))]
            busy_kills += bool(busy)
            os.kill(engines[victim].pid, signal.SIGKILL)
            assert engines[victim].wait(10) == -signal.SIGKILL
            procs.running.pop(victim)
            killed.append(victim)

        wait_for(lambda: r.zcard("orch:runs:status:succeeded") == TASKS, 120, f"{TASKS} runs to succeed",
                 interval_s=0.2)
        wait_for(lambda: r.xpending("orch:events", "engine")["pending"] == 0, 30, "every event acknowledged")
        dead = {names[name] for name in killed}
        wait_for(lambda: not dead & {c["name"].decode() for c in r.xinfo_consumers("orch:events", "engine")}, 30,
                 "the killed engines to leave the consumer group")
        ledger = {k.decode(): int(v) for k, v in r.hgetall("test:ledger").items()}
        runs = {m.decode() for m in r.zrange("orch:runs", 0, -1)}
        took_over = "".join(procs.log(name) for name in engines if name not in killed).count("took over")
    finally:
        r.close()
        procs.stop_all()
        server.stop()

    duplicates = sum(n - 1 for n in ledger.values())
    print(f"\nengine failover ledger: {TASKS} tasks, {ENGINES} engines, {len(killed)} SIGKILLs "
          f"({busy_kills} while holding entries; {took_over} takeovers), {TASKS - len(ledger)} lost, "
          f"{duplicates} duplicate executions, {len(runs)} runs for {TASKS} events")
    assert runs == {derive_run_id("one", SOURCE, event_id) for event_id in ids}, "one run per (rule, event)"
    assert len(ledger) == TASKS, "no task lost"
    assert duplicates <= len(killed), "at most one duplicate execution per kill"


def test_an_engine_killed_holding_a_batch_is_taken_over_through_its_missing_heartbeat(tmp_path: Path) -> None:
    events = 60
    server = RedisServer()
    project = make_project(tmp_path / "project", rules=RULES, workflows=WORKFLOWS)
    procs = Processes(orch_env(server.url, project, **{**FAILOVER, "ORCH_ENGINE_BATCH_SIZE": "25"}), tmp_path)
    r = server.client()
    try:
        crashing = procs.start("engine-1", "engine", ORCH_FAULTPOINT="engine.before_commit:1")
        with Client(settings=Settings(redis_url=server.url), source=SOURCE) as client:
            ids = client.emit_many([{"type": "test.one", "id": f"k-{i}", "data": {"n": i}} for i in range(events)])
        assert crashing.wait(30) == 137, procs.log("engine-1")
        procs.running.pop("engine-1")
        dead = consumer_name(r, crashing)
        assert holding(r, [dead]) == [dead], "the dead engine holds a batch it never committed"

        procs.start("engine-2", "engine")  # the idle reclaim waits an hour: only the takeover can do it
        wait_for(lambda: r.zcard("orch:runs") == events, 60, f"{events} runs")
        wait_for(lambda: dead not in {c["name"].decode() for c in r.xinfo_consumers("orch:events", "engine")},
                 30, "the dead consumer to leave the group")
        runs = {m.decode() for m in r.zrange("orch:runs", 0, -1)}
        log = procs.log("engine-2")
    finally:
        r.close()
        procs.stop_all()
        server.stop()

    assert runs == {derive_run_id("one", SOURCE, event_id) for event_id in ids}
    assert f"took over 25 entries of engine {dead}" in log
    assert "reclaimed" not in log
