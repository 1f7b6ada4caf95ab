"""Health probes of real `orch engine|worker|triggers` processes (`--health-port`, `orch health`), and the
autoscaling load of a real worker pool.

A healthy process is live and ready; with Redis gone, readiness fails (naming Redis) while liveness holds
(the loops ride the outage out); a loop frozen by a fault point fails liveness; a pool of 2 workers each
running a task, with 4 more queued, is a load of (2 + 4) / 2 = 3.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from executors.queues import RQQueueInspector
from orchestrator.metrics import RedisCollector
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys

from ..helpers import RedisServer, free_port, wait_for
from ..integration.test_worker_fastpath import WORKFLOWS, dispatch
from ..projects import make_project
from .conftest import Processes, orch_env

pytestmark = pytest.mark.e2e

KEYS = Keys()


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except httpx.TransportError:
        return 0, {}
    return response.status_code, response.json()


def probe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "health", *args], env=env, capture_output=True,
                          text=True, timeout=30)


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    project = make_project(tmp_path / "project", workflows=WORKFLOWS)
    server = RedisServer()
    procs = Processes(orch_env(server.url, project, ORCH_WORKER_HEARTBEAT_S="0.2", ORCH_WORKER_HEARTBEAT_TTL_S="2",
                               ORCH_ENGINE_BLOCK_S="0.2"), tmp_path)
    yield server, procs, Settings(redis_url=server.url, project=project)
    procs.stop_all()
    server.stop()


def test_each_role_is_live_and_ready_and_without_redis_live_but_not_ready(setup: Any) -> None:
    server, procs, _ = setup
    ports = {role: free_port() for role in ("engine", "worker", "pool", "triggers")}
    procs.start("engine", "engine", "--health-port", str(ports["engine"]))
    procs.start("worker", "worker", "--health-port", str(ports["worker"]))
    procs.start("pool", "worker", "--concurrency", "2", "--health-port", str(ports["pool"]))
    procs.start("triggers", "triggers", "--health-port", str(ports["triggers"]))
    api_port = free_port()
    procs.start("api", "api", "--port", str(api_port), "--role", "hooks")
    for role, port in ports.items():
        status, body = wait_for(lambda p=port: (answer := get(p, "/readyz"))[0] == 200 and answer, 30,
                                f"{role} to be ready")
        assert body["ok"] and body["redis"] == "ok", body
        assert get(port, "/livez")[0] == 200
    assert get(ports["engine"], "/readyz")[1]["conditions"] == {"ruleset": "ok"}
    assert get(ports["worker"], "/readyz")[1]["conditions"] == {"heartbeat": "ok"}
    assert get(ports["pool"], "/readyz")[1]["conditions"] == {"workers": "ok"}
    assert set(get(ports["pool"], "/livez")[1]["loops_age_s"]) == {"pool"}
    assert get(ports["engine"], "/nope")[0] == 404

    ok = probe(procs.env, "--role", "engine", "--port", str(ports["engine"]))
    assert ok.returncode == 0 and ok.stdout.strip() == "engine ready: ready", ok.stdout + ok.stderr
    api = wait_for(lambda: (p := probe(procs.env, "--role", "api", "--port", str(api_port))).returncode == 0 and p,
                   30, "the API to answer /healthz")
    assert api.stdout.strip() == "api ready: HTTP 200, Redis ok"

    server.process.kill()  # Redis gone
    server.process.wait()
    for role, port in ports.items():
        status, body = wait_for(lambda p=port: (answer := get(p, "/readyz"))[0] == 503 and answer, 20,
                                f"{role} to be not ready")
        assert body["reason"].startswith("Redis unreachable"), body
        assert get(port, "/livez")[0] == 200, f"{role}: a Redis outage is not a reason to restart"
    not_ready = probe(procs.env, "--role", "worker", "--port", str(ports["worker"]), "--json")
    assert not_ready.returncode == 1 and '"ok": false' in not_ready.stdout
    live = probe(procs.env, "--role", "triggers", "--port", str(ports["triggers"]), "--live")
    assert live.returncode == 0, live.stdout + live.stderr
    api_down = probe(procs.env, "--role", "api", "--port", str(api_port))
    assert api_down.returncode == 1 and api_down.stdout.startswith("api not ready: HTTP 503, Redis unreachable")
    assert probe(procs.env, "--role", "api", "--port", str(api_port), "--live").returncode == 0, "it answers"
    for name in list(procs.running):  # how they stop without Redis is another test's business (test_redis_trouble)
        procs.stop(name, signal.SIGKILL)


def test_a_stuck_engine_loop_fails_liveness(setup: Any) -> None:
    _, procs, _ = setup
    port = free_port()
    procs.start("engine", "engine", "--health-port", str(port), ORCH_FAULTPOINT="engine.tick:5:stall",
                ORCH_HEALTH_STUCK_AFTER_S="0.5")
    status, body = wait_for(lambda: (answer := get(port, "/livez"))[0] == 503 and answer, 30, "liveness to fail")
    assert body["reason"].startswith("engine loop stuck"), body
    assert get(port, "/readyz")[0] == 503
    stuck = probe(procs.env, "--role", "engine", "--port", str(port), "--live")
    assert stuck.returncode == 1 and stuck.stdout.startswith("engine not live: engine loop stuck"), stuck.stdout
    nobody = probe(procs.env, "--role", "engine", "--port", str(free_port()))
    assert nobody.returncode == 1 and "no answer" in nobody.stdout
    taken = procs.start("second", "engine", "--health-port", str(port))
    assert taken.wait(30) == 1
    assert f"the health listener cannot listen on 127.0.0.1:{port}" in procs.log("second")
    procs.stop("engine", signal.SIGKILL)  # a stuck loop does not heed SIGTERM: that is what liveness is for


def test_a_pools_workers_are_its_capacity_and_the_load_is_work_per_slot(setup: Any) -> None:
    server, procs, settings = setup
    r = server.client()
    pool = procs.start("pool", "worker", "--concurrency", "2")
    wait_for(lambda: r.zcard(KEYS.workers) == 2, 30, "two workers to register")
    dispatch(r, settings, [("nap", [30])] * 6)  # 2 start, 4 wait
    wait_for(lambda: _load(r) == (2.0, 3.0), 20, "2 slots, (2 running + 4 queued) / 2")
    samples = _samples(r)
    assert samples[("orch_queue_jobs", frozenset({("queue", "default"), ("state", "queued")}))] == 4
    assert samples[("orch_queue_jobs", frozenset({("queue", "default"), ("state", "started")}))] == 2
    r.close()
    pool.send_signal(signal.SIGTERM)  # the second SIGTERM (procs.stop) stops the naps at once
    # both workers must have taken the first SIGTERM before the second comes: two signals sent to a process
    # before its handler runs arrive as one
    wait_for(lambda: procs.log("pool").count("finishing the current task") == 2, 10,
             "both workers to take the first SIGTERM")
    procs.stop("pool")


def _samples(r: redis.Redis) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry()
    registry.register(RedisCollector(r, Keys(), RQQueueInspector(r, Keys()), version="test"))
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def _load(r: redis.Redis) -> tuple[float, float]:
    samples = _samples(r)
    label = frozenset({("queue", "default")})
    return samples.get(("orch_queue_capacity", label), -1), samples.get(("orch_queue_load", label), -1)
