"""SIGTERM is a graceful stop: a worker finishes the task it is running, then exits; the engine exits
between batches. Nothing is lost or left half done."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from orchestrator import Client
from orchestrator.settings import Settings
from orchestrator.workflows.runs import derive_run_id

from ..helpers import RedisServer, wait_for
from ..projects import make_project
from .conftest import Processes, orch_env

pytestmark = pytest.mark.e2e

SLOW = {
    "slow": """
        import time
        from orchestrator import task, workflow

        @task
        def slow(seconds: float) -> str:
            time.sleep(seconds)
            return "done"

        @workflow
        def take_time(seconds: float):
            slow(seconds)
    """
}
RULES = """
    rules:
      - name: slow
        type: slow.requested
        workflow: take_time
        params:
          seconds: "{{ event.data.seconds }}"
"""


def test_a_worker_finishes_its_task_on_sigterm_and_the_engine_stops_cleanly(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", rules=RULES, workflows=SLOW)
    server = RedisServer()
    procs = Processes(orch_env(server.url, project), tmp_path)
    r = server.client()
    try:
        procs.start("engine", "engine")
        worker = procs.start("worker", "worker")
        with Client(settings=Settings(redis_url=server.url), source="/e2e/slow") as client:
            event_id = client.emit("slow.requested", {"seconds": 1.5})
        run_key = f"orch:run:{derive_run_id('slow', '/e2e/slow', event_id)}"
        wait_for(lambda: b'"running"' in (r.hget(run_key, "t:slow") or b""), 30, "the slow task to start")

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, procs.log("worker")
        procs.running.pop("worker")

        wait_for(lambda: b'"succeeded"' in (r.hget(run_key, "meta") or b""), 30,
                 "the run to succeed: the worker finished the task before exiting")
        assert procs.stop("engine") == 0
        assert "stopped" in procs.log("engine")
        assert r.xpending("orch:events", "engine")["pending"] == 0
        assert r.xpending("orch:results", "engine")["pending"] == 0
    finally:
        r.close()
        procs.stop_all()
        server.stop()
