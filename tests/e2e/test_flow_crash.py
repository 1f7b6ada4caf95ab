"""Crash: kill -9 the engine after its flow-control decisions (the batch rule merged the events into holds,
and filled ones were released) and before the transaction that acknowledges those events; after another
engine takes them over, every event is in exactly one batch and counted once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import Client
from orchestrator.settings import Settings

from ..helpers import RedisServer, wait_for
from ..projects import make_project
from .conftest import Processes, orch_env

pytestmark = pytest.mark.e2e

KEYS, PER_KEY = 3, 10
FAST_RECLAIM = {"ORCH_ENGINE_CLAIM_IDLE_S": "0.5", "ORCH_ENGINE_MAINTENANCE_INTERVAL_S": "0.2"}
RULES = """
    rules:
      - name: bulk
        type: row.added
        workflow: write
        batch: {key: data.account, max_size: 10, timeout_s: 3600}
        params: {count: "{{ events | length }}"}
"""
WORKFLOWS = {"bulk": """
    from orchestrator import task, workflow

    @task
    def store(count: int) -> int:
        return count

    @workflow
    def write(count: int):
        store(count)
"""}


def test_events_decided_before_a_crash_are_batched_once(tmp_path: Path) -> None:
    server = RedisServer()
    project = make_project(tmp_path / "project", rules=RULES, workflows=WORKFLOWS)
    procs = Processes(orch_env(server.url, project, **FAST_RECLAIM), tmp_path)
    r = server.client()
    try:
        crashing = procs.start("engine-1", "engine", ORCH_FAULTPOINT="engine.before_commit:1",
                               ORCH_ENGINE_BATCH_SIZE="25")
        with Client(settings=Settings(redis_url=server.url), source="/e2e/rows") as client:
            client.emit_many([{"type": "row.added", "data": {"account": f"a{i % KEYS}", "n": i}}
                              for i in range(KEYS * PER_KEY)])
        assert crashing.wait(30) == 137, procs.log("engine-1")
        procs.running.pop("engine-1")
        assert r.keys("orch:flow:memo:*"), "the dead engine decided before its commit"

        procs.start("engine-2", "engine")
        wait_for(lambda: r.zcard("orch:runs:workflow:write") == KEYS, 60, f"{KEYS} batch runs")
        wait_for(lambda: r.xpending("orch:events", "engine")["pending"] == 0, 30, "every entry to be acknowledged")
        wait_for(lambda: r.xpending("orch:results", "engine")["pending"] == 0, 30, "every release to be acknowledged")

        carried = []
        for run_id in r.zrange("orch:runs:workflow:write", 0, -1):
            events = json.loads(r.hget(f"orch:run:{run_id.decode()}", "events") or b"[]")
            carried.append(sorted(e["event"]["data"]["n"] for e in events))
        assert sorted(carried) == [list(range(k, KEYS * PER_KEY, KEYS)) for k in range(KEYS)], \
            "each account's ten rows in one batch, none twice"
        assert r.hgetall("orch:metrics:orch_flow_events_total") == {b"bulk\x1fbatch\x1fmerged": b"30"}
        assert r.hgetall("orch:metrics:orch_flow_holds_released_total") == {b"bulk\x1fbatch\x1ffull": b"3"}
        assert not r.keys("orch:flow:hold:*")
        assert all(r.ttl(m) > 0 for m in r.keys("orch:flow:memo:*")), "memos outlive their commit, not forever"
        assert "reclaimed" in procs.log("engine-2")
    finally:
        r.close()
        procs.stop_all()
        server.stop()
