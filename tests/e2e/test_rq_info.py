"""Jobs stay RQ jobs on the fast path: RQ's own `rq info` (a separate process, as an operator runs it) lists
orch's queues with their queued counts and the fast worker with its state, and RQ's registries, which
rq-dashboard reads, count the started, finished and failed jobs."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rq import Queue

from orchestrator.settings import Settings

from ..helpers import RedisServer, wait_for
from ..integration.test_worker_fastpath import WORKFLOWS, dispatch, records
from ..projects import make_project
from .conftest import Processes, orch_env
from .test_worker_pool import FAST_BEATS, alive

pytestmark = pytest.mark.e2e

RQ = Path(sys.executable).parent / "rq"
FAILING = {"failing": """
    from orchestrator import task, workflow

    @task
    def boom():
        raise ValueError("boom")

    @workflow
    def call_boom():
        boom()
"""}


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    project = make_project(tmp_path / "project", workflows={**WORKFLOWS, **FAILING})
    server = RedisServer()
    procs = Processes(orch_env(server.url, project, **FAST_BEATS), tmp_path)
    yield server, procs, Settings(redis_url=server.url, project=project)
    procs.stop_all()
    server.stop()


def rq_info(url: str) -> list[str]:
    """The lines `rq info --raw` prints, with runs of spaces made one."""
    result = subprocess.run([str(RQ), "info", "--raw", "--url", url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return [" ".join(line.split()) for line in result.stdout.splitlines() if line.strip()]


def test_rq_info_and_rqs_registries_show_the_fast_paths_queues_worker_and_counts(setup: Any) -> None:
    server, procs, settings = setup
    r = server.client()
    procs.start("worker", "worker")
    (name,) = wait_for(lambda: alive(r), 30, "the worker to register")

    dispatch(r, settings, [("noop", [i]) for i in range(3)] + [("boom", [])], prefix="done")
    wait_for(lambda: len(records(r)) == 4 and all(len(x) == 2 for x in records(r).values()), 30,
             "three runs done and one failed")
    dispatch(r, settings, [("nap", [60])], prefix="busy")
    wait_for(lambda: alive(r)[name].get("task") == "nap", 30, "the worker to start the long task")
    dispatch(r, settings, [("noop", [i]) for i in range(2)], queue="elsewhere", prefix="wait")

    lines = rq_info(server.url)
    assert "queue orch.default 0, 1 executing, 3 finished, 1 failed" in lines, lines
    assert "queue orch.elsewhere 2, 0 executing, 0 finished, 0 failed" in lines, lines
    (worker,) = [line for line in lines if line.startswith("worker ")]
    assert worker.startswith(f"worker {name} (") and worker.endswith(") busy orch.default. jobs: 3 finished, 1 failed"), lines

    default = Queue("orch.default", connection=r)
    assert default.finished_job_registry.count == 3
    assert default.failed_job_registry.count == 1
    assert default.started_job_registry.count == 1
    assert Queue("orch.elsewhere", connection=r).count == 2
    procs.stop("worker", signal.SIGKILL)  # not worth waiting for the nap
