"""A Sentinel failover in the middle of runs: real engine and worker processes on a `redis+sentinel://` URL.

One primary, one replica, three sentinels on loopback. Runs are held mid-task (their task waits for a gate
file) while an operator forces `SENTINEL FAILOVER`; events are emitted before and after it. Every run
completes on the new primary, and the engine and worker followed it (they met the demoted primary's
READONLY or a dropped connection, rode it out, and asked the sentinels again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from orchestrator import AsyncClient, Client
from orchestrator.connection import client_from_url
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.store import RunStore
from orchestrator.workflows.runs import derive_run_id

from ..helpers import RedisServer, wait_for
from ..projects import make_project
from ..sentinel_topology import Sentinels, demoted, replica_in_sync
from .conftest import Processes, orch_env

pytestmark = pytest.mark.e2e

RULES = """
rules:
  - {name: r, type: t.x, workflow: two, params: {n: "{{ data.n }}"}}
"""
WORKFLOWS = {"two": """
    import os, time
    from pathlib import Path
    from orchestrator import task, workflow

    @task
    def held(n: int) -> int:
        while not Path(os.environ["GATE"]).exists():
            time.sleep(0.05)
        return n

    @task
    def after(n: int) -> int:
        return n + 1

    @workflow
    def two(n: int):
        after(held(n))
"""}
SOURCE = "/failover"


@dataclass
class Topology:
    primary: RedisServer
    replica: RedisServer
    sentinels: Sentinels
    procs: Processes
    settings: Settings
    gate: Path

    def emit(self, n: int) -> str:
        with Client(settings=self.settings, source=SOURCE) as client:
            return client.emit("t.x", {"n": n})

    def emit_async(self, numbers: range) -> list[str]:
        """Through AsyncClient: the asyncio Sentinel client (as `orch api` uses) finds the primary too."""
        async def emit() -> list[str]:
            async with AsyncClient(settings=self.settings, source=SOURCE) as client:
                return [await client.emit("t.x", {"n": n}) for n in numbers]
        return asyncio.run(emit())

    def statuses(self, events: list[str]) -> dict[str, str]:
        client = client_from_url(self.sentinels.url)
        try:
            store = RunStore(client, Keys(), retention_s=600)
            runs = {e: store.get(derive_run_id("r", SOURCE, e)) for e in events}
        except redis.RedisError:
            return {}
        finally:
            client.close()
        return {e: str(run.status) if run else "missing" for e, run in runs.items()}


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    primary = RedisServer()
    replica = RedisServer("--replicaof", "127.0.0.1", str(primary.port))
    sentinels = Sentinels(primary)
    gate = tmp_path / "gate"
    project = make_project(tmp_path / "project", rules=RULES, workflows=WORKFLOWS)
    procs = Processes(orch_env(sentinels.url, project, ORCH_WORKER_HEARTBEAT_S="0.5", GATE=str(gate)), tmp_path)
    try:
        wait_for(lambda: replica_in_sync(replica), 30, "the replica to sync")
        sentinels.ready(replica.port)
        procs.start("engine", "engine")
        procs.start("worker", "worker")
        yield Topology(primary, replica, sentinels, procs, Settings(redis_url=sentinels.url, project=project), gate)
    finally:
        procs.stop_all()
        sentinels.stop()
        replica.stop()
        primary.stop()


def test_runs_complete_across_a_sentinel_failover(topology: Topology) -> None:
    before = [topology.emit(n) for n in range(5)]
    wait_for(lambda: list(topology.statuses(before).values()).count("running") == len(before), 60,
             "the runs to start (their first task held at the gate)")
    old_primary = topology.primary.port

    topology.sentinels.failover()
    # Until the sentinels demote it (~10 s after the promotion), the old primary still takes writes, and
    # loses them when it resyncs from the new one: deploy/REDIS.md, "What a failover loses".
    wait_for(lambda: topology.sentinels.primary_port() == topology.replica.port and demoted(topology.primary), 60,
             "the failover to end: every sentinel names the new primary, the old one is its replica")
    after = [topology.emit(n) for n in range(5, 8)] + topology.emit_async(range(8, 10))  # to the new primary
    topology.gate.touch()  # the held tasks, started on the old primary, finish on the new one

    try:
        done = wait_for(lambda: (s := topology.statuses(before + after)) and set(s.values()) == {"succeeded"} and s,
                        60, "every run, from before and after the failover, to succeed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nruns: {topology.statuses(before + after)}\nengine:\n"
                             f"{topology.procs.log('engine')[-3000:]}\nworker:\n{topology.procs.log('worker')[-3000:]}") from None
    assert len(done) == 10
    for name, process in topology.procs.running.items():
        assert process.poll() is None, f"{name} exited:\n{topology.procs.log(name)}"
    assert topology.sentinels.primary_port() != old_primary

