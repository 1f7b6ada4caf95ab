"""One event must not take the engine down: rule templates are bounded while they render, not after.

A real `orch engine` process gets events whose data turns each rule's parameters into a bomb: a string
repeated a billion times, padding to a billion characters, nested loops of a billion steps, a string
doubled in a loop. Every rule fails for that event with its reason recorded in a failed run, the engine
keeps going (a normal event after the bombs still starts its run) and its memory stays flat.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from orchestrator import Client
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.store import RunStore

from ..e2e.conftest import Processes, orch_env
from ..helpers import RedisServer, wait_for
from ..projects import make_project

ENGINE_RSS_LIMIT_BYTES = 150 * 1024 * 1024

BOMBS = {
    "repeat": "{{ 'x' * data.n }}",
    "repeat-data": "{{ data.s * data.n }}",
    "list": "{{ [data.s] * data.n }}",
    "power": "{{ 10 ** data.n }}",
    "pad": "{{ data.s | center(data.n) }}",
    "format": "{{ '%0*d' % (data.n, 1) }}",
    "loops": "{% for a in range(data.k) %}{% for b in range(data.k) %}{% endfor %}{% endfor %}done",
    "doubling": "{% set ns = namespace(s=data.s) %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
                "{{ ns.s | length }}",
}

RULES = "rules:\n" + "".join(
    f"  - {{name: {name}, type: bomb.dropped, workflow: noop, params: {{value: \"{template}\"}}}}\n"
    for name, template in BOMBS.items()) + "  - {name: fine, type: fine.event, workflow: noop, params: {value: ok}}\n"

WORKFLOWS = {"noop": """
    from orchestrator import task, workflow

    @task
    def keep(value):
        return value

    @workflow
    def noop(value):
        keep(value)
"""}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[Processes, Settings]]:
    server = RedisServer()
    project = make_project(tmp_path / "project", rules=RULES, workflows=WORKFLOWS)
    procs = Processes(orch_env(server.url, project), tmp_path)
    procs.start("engine", "engine")
    try:
        yield procs, Settings(redis_url=server.url, project=project)
    finally:
        procs.stop_all()
        server.stop()


def engine_started(client: redis.Redis) -> bool:
    try:
        return any(g["name"] == b"engine" for g in client.xinfo_groups("orch:events"))
    except redis.ResponseError:
        return False


def test_template_bombs_fail_their_rule_and_leave_the_engine_up_and_small(engine: tuple[Processes, Settings]) -> None:
    procs, settings = engine
    process = psutil.Process(procs.running["engine"].pid)
    r = redis.Redis.from_url(str(settings.redis_url))
    runs = RunStore(r, Keys(), retention_s=60)
    wait_for(lambda: engine_started(r), 30, "the engine to start")
    with Client(settings=settings, source="/attacker") as client:
        for _ in range(5):  # the same bombs again and again: memory must not grow with them
            client.emit("bomb.dropped", {"n": 1_000_000_000, "k": 1_000_000_000, "s": "x" * 1000})
        failed: dict[str, Any] = wait_for(
            lambda: found if len(found := {m["rule"]: m for m in runs.list(status="failed", limit=100)}) == len(BOMBS)
            else None, 60, "a failed run for every bomb rule")
        fine = client.emit("fine.event", {})

    for name, meta in failed.items():
        assert "limit" in meta["error"] and f"rule {name}: params.value" in meta["error"], meta["error"]
    assert "the result of `*` would be 1000000000 characters" in failed["repeat"]["error"]
    wait_for(lambda: any(m["event"]["id"] == fine for m in runs.list(limit=100)), 30,
             "the engine to go on with the next event")
    assert procs.running["engine"].poll() is None, procs.log("engine")
    rss = process.memory_info().rss
    print(f"engine RSS after the bombs: {rss / 2**20:.0f} MiB")
    assert rss < ENGINE_RSS_LIMIT_BYTES, f"engine RSS {rss / 2**20:.0f} MiB"
    r.close()
