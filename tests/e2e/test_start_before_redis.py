"""Roles that start before their Redis is ready wait for it instead of exiting into a restart loop.

Pods and Compose services start together: an engine or worker may start while its Redis is still
down, loading its data, or a primary that refuses writes (NOREPLICAS: `min-replicas-to-write` unmet,
no replica yet). Real `orch engine` and `orch worker` processes wait, saying why
(ORCH_REDIS_START_WAIT_S), ride out the start-up writes like their loops, and then run workflows.
"""

from __future__ import annotations

import pytest

from orchestrator import Client
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.store import RunStore
from orchestrator.workflows.runs import RunStatus, derive_run_id

from ..helpers import RedisServer, free_port, wait_for
from ..projects import make_project
from .conftest import Processes, orch_env

pytestmark = pytest.mark.e2e

RULES = """
rules:
  - {name: r, type: t.x, workflow: one}
"""
WORKFLOWS = {"one": """
    from orchestrator import task, workflow

    @task
    def step() -> str:
        return "done"

    @workflow
    def one():
        step()
"""}


def _runs_a_workflow(server: RedisServer) -> None:
    settings = Settings(redis_url=server.url)
    with Client(settings=settings, source="/e2e/start") as client:
        event_id = client.emit("t.x", None)
    store = RunStore(server.client(), Keys("orch"), retention_s=settings.run_retention_s)
    run_id = derive_run_id("r", "/e2e/start", event_id)

    def succeeded() -> bool:
        run = store.get(run_id)
        return run is not None and run.status is RunStatus.SUCCEEDED

    wait_for(succeeded, 60, "the workflow to run")


def test_an_engine_and_a_worker_started_before_redis_wait_for_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    project = make_project(tmp_path / "project", rules=RULES, workflows=WORKFLOWS)
    procs = Processes(orch_env(f"redis://127.0.0.1:{port}/0", project), tmp_path)
    server: RedisServer | None = None
    try:
        procs.start("engine", "engine")
        procs.start("worker", "worker")
        wait_for(lambda: all("waiting for Redis" in procs.log(n) for n in ("engine", "worker")), 60,
                 "both to say they wait for Redis")
        server = RedisServer(port=port)
        _runs_a_workflow(server)
        assert all(p.poll() is None for p in procs.running.values()), "neither exited"
    finally:
        procs.stop_all()
        if server is not None:
            server.stop()


def test_an_engine_and_a_worker_ride_out_a_primary_refusing_writes_at_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = RedisServer("--min-replicas-to-write", "1")  # no replica: every write is NOREPLICAS
    project = make_project(tmp_path / "project", rules=RULES, workflows=WORKFLOWS)
    procs = Processes(orch_env(server.url, project), tmp_path)
    try:
        procs.start("engine", "engine")
        procs.start("worker", "worker")
        wait_for(lambda: all("noreplicas" in procs.log(n) for n in ("engine", "worker")), 60,
                 "both to ride out NOREPLICAS")
        server.client().config_set("min-replicas-to-write", 0)  # a replica caught up, or the operator
        _runs_a_workflow(server)
        assert all(p.poll() is None for p in procs.running.values()), "neither exited"
    finally:
        procs.stop_all()
        server.stop()
