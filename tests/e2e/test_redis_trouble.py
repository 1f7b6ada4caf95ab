"""Redis refusing for a while must not end the engine or the workers: they back off, log, count, go on.

Real `orch engine` and `orch worker` processes on a Redis primary with a replica, put through what
production Redis does to its clients: memory full under noeviction (OOM), every client paused, a long
script (BUSY), and a failover that turns their Redis into a read-only replica (READONLY) and back. After
each, the processes are still running, an event emitted during or after the trouble runs its workflow,
and `orch_redis_errors_total{role,error}` counts what they rode out.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from orchestrator import Client
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.store import RunStore
from orchestrator.workflows.runs import derive_run_id

from ..helpers import RedisServer, wait_for
from ..projects import make_project
from .conftest import Processes, orch_env

pytestmark = pytest.mark.e2e

RULES = """
rules:
  - {name: r, type: t.x, workflow: one, params: {n: "{{ data.n }}"}}
"""
WORKFLOWS = {"one": """
    from orchestrator import task, workflow

    @task
    def step(n: int) -> int:
        return n

    @workflow
    def one(n: int):
        step(n)
"""}


@dataclass
class Trouble:
    primary: RedisServer
    replica: RedisServer
    procs: Processes
    settings: Settings

    def admin(self, server: RedisServer | None = None) -> redis.Redis:
        return (server or self.primary).client()

    def emit(self, n: int, server: RedisServer | None = None) -> str:
        settings = self.settings.model_copy(update={"redis_url": (server or self.primary).url})
        with Client(settings=settings, source="/trouble") as client:
            return client.emit("t.x", {"n": n})

    def succeeded(self, event_id: str) -> bool:
        client = self.admin()
        try:
            run = RunStore(client, Keys(), retention_s=60).get(derive_run_id("r", "/trouble", event_id))
        except redis.RedisError:
            return False
        finally:
            client.close()
        return run is not None and str(run.status) == "succeeded"

    def errors(self) -> dict[str, int]:
        client = self.admin()
        try:
            raw = client.hgetall("orch:metrics:orch_redis_errors_total")
        finally:
            client.close()
        return {k.decode().replace("\x1f", "/"): int(v) for k, v in raw.items()}

    def alive(self) -> None:
        for name, process in self.procs.running.items():
            assert process.poll() is None, f"{name} exited:\n{self.procs.log(name)}"


def worker_side(counted: dict[str, int], error: str) -> int:
    """A worker's errors: its main loop's, or its heartbeat thread's (which meets them first when idle)."""
    return counted.get(f"worker/{error}", 0) + counted.get(f"heartbeat/{error}", 0)


@pytest.fixture(scope="module")
def trouble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trouble]:
    tmp = tmp_path_factory.mktemp("trouble")
    primary = RedisServer("--maxmemory-policy", "noeviction")
    replica = RedisServer("--replicaof", "127.0.0.1", str(primary.port))
    project = make_project(tmp / "project", rules=RULES, workflows=WORKFLOWS)
    procs = Processes(orch_env(primary.url, project, ORCH_WORKER_HEARTBEAT_S="0.5"), tmp)
    procs.start("engine", "engine")
    procs.start("worker", "worker")
    settings = Settings(redis_url=primary.url, project=project)
    state = Trouble(primary, replica, procs, settings)
    first = state.emit(0)
    wait_for(lambda: state.succeeded(first), 60, "the first run (the stack is up)")
    yield state
    procs.stop_all()
    replica.stop()
    primary.stop()


def test_memory_full_under_noeviction(trouble: Trouble) -> None:
    engine = trouble.procs.running["engine"]
    os.kill(engine.pid, signal.SIGSTOP)  # the engine will read this event only once memory is full
    event = trouble.emit(1)
    admin = trouble.admin()
    admin.config_set("maxmemory", 1)
    os.kill(engine.pid, signal.SIGCONT)
    try:
        wait_for(lambda: "oom" in trouble.procs.log("engine") and "oom" in trouble.procs.log("worker"), 30,
                 "the engine and the worker to meet OOM")
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()

    wait_for(lambda: trouble.succeeded(event), 60, "the run of the event read while memory was full")
    trouble.alive()
    counted = wait_for(lambda: (e := trouble.errors()).get("engine/oom") and worker_side(e, "oom") and e, 30,
                       "the OOM errors to be counted once Redis takes writes again")
    assert counted["engine/oom"] >= 1 and worker_side(counted, "oom") >= 1, counted


def test_every_client_paused(trouble: Trouble) -> None:
    admin = trouble.admin()
    admin.execute_command("CLIENT", "PAUSE", 2000, "ALL")
    admin.close()

    event = trouble.emit(2)  # waits out the pause, like every other client

    wait_for(lambda: trouble.succeeded(event), 60, "the run after the pause")
    trouble.alive()


def test_a_long_script_answers_busy(trouble: Trouble) -> None:
    admin = trouble.admin()
    admin.config_set("busy-reply-threshold", 100)
    spin = "local t = redis.call('TIME')[1]; while tonumber(redis.call('TIME')[1]) - t < 3 do end; return 1"
    blocker = threading.Thread(target=lambda: trouble.admin().eval(spin, 0), daemon=True)
    blocker.start()
    blocker.join()
    admin.close()
    event = trouble.emit(3)

    wait_for(lambda: trouble.succeeded(event), 60, "the run after the script")
    trouble.alive()
    assert "Redis error (busy: " in trouble.procs.log("engine") + trouble.procs.log("worker")
    wait_for(lambda: any(key.endswith("/busy") for key in trouble.errors()), 30, "the BUSY errors to be counted")


def test_a_failover_makes_their_redis_a_read_only_replica_and_back(trouble: Trouble) -> None:
    primary, replica = trouble.admin(), trouble.admin(trouble.replica)
    wait_for(lambda: replica.info("replication")["master_link_status"] == "up", 30, "the replica to be in sync")
    replica.execute_command("REPLICAOF", "NO", "ONE")  # promoted
    primary.execute_command("REPLICAOF", "127.0.0.1", trouble.replica.port)  # theirs is a replica now
    try:
        wait_for(lambda: "readonly" in trouble.procs.log("engine") and "readonly" in trouble.procs.log("worker"), 30,
                 "the engine and the worker to meet READONLY")
        event = trouble.emit(4, trouble.replica)  # accepted by the new primary, replicated to theirs
    finally:
        wait_for(lambda: primary.info("replication").get("master_link_status") == "up", 30, "the sync")
        primary.execute_command("REPLICAOF", "NO", "ONE")  # failed back
        replica.execute_command("REPLICAOF", "127.0.0.1", trouble.primary.port)
        primary.close()
        replica.close()

    wait_for(lambda: trouble.succeeded(event), 60, "the run of the event accepted during the failover")
    trouble.alive()
    counted = wait_for(lambda: (e := trouble.errors()).get("engine/readonly") and worker_side(e, "readonly") and e,
                       30, "the READONLY errors to be counted")
    assert counted["engine/readonly"] >= 1 and worker_side(counted, "readonly") >= 1, counted


def test_they_stop_cleanly_after_all_that(trouble: Trouble) -> None:
    assert trouble.procs.stop("worker") == 0
    assert trouble.procs.stop("engine") == 0

