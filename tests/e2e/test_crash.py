"""Crash: kill -9 the engine after it read events and before it acknowledged them; after a restart every
event has exactly one run. The kill is a fault point (`os._exit(137)` at a named place), so it lands
deterministically inside the window, once at each of the two places that matter."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import Client
from orchestrator.settings import Settings
from orchestrator.workflows.runs import derive_run_id

from ..helpers import EXAMPLES, RedisServer, wait_for
from .conftest import Processes, orch_env

pytestmark = pytest.mark.e2e

EVENTS = 60
FAST_RECLAIM = {"ORCH_ENGINE_CLAIM_IDLE_S": "0.5", "ORCH_ENGINE_MAINTENANCE_INTERVAL_S": "0.2"}


@pytest.mark.parametrize("fault", ["engine.after_read", "engine.before_commit"])
def test_every_event_gets_exactly_one_run_after_the_engine_is_killed(tmp_path: Path, fault: str) -> None:
    server = RedisServer()
    procs = Processes(orch_env(server.url, EXAMPLES, **FAST_RECLAIM), tmp_path)
    r = server.client()
    try:
        procs.start("worker", "worker")
        crashing = procs.start("engine-1", "engine", ORCH_FAULTPOINT=f"{fault}:1", ORCH_ENGINE_BATCH_SIZE="25")
        with Client(settings=Settings(redis_url=server.url), source="/e2e/crash") as client:
            ids = client.emit_many([{"type": "order.created", "data": {"order_id": f"C-{i}", "amount": i + 1}}
                                    for i in range(EVENTS)])

        assert crashing.wait(30) == 137, procs.log("engine-1")
        procs.running.pop("engine-1")
        assert r.xpending("orch:events", "engine")["pending"] > 0, "the dead engine left read entries unacknowledged"
        assert r.zcard("orch:runs") == 0, "nothing was committed before the kill"

        procs.start("engine-2", "engine")
        wait_for(lambda: r.zcard("orch:runs:status:succeeded") == EVENTS, 60, f"{EVENTS} runs to succeed")

        run_ids = {derive_run_id("process-new-orders", "/e2e/crash", event_id) for event_id in ids}
        assert {m.decode() for m in r.zrange("orch:runs", 0, -1)} == run_ids, "exactly one run per event"
        # the runs' own lifecycle events (orch.run.*) arrive after they end: wait for those to be acknowledged too
        wait_for(lambda: r.xpending("orch:events", "engine")["pending"] == 0, 30, "every entry to be acknowledged")
        finished = r.hgetall("orch:metrics:orch_tasks_finished_total")
        assert finished[b"process_order\x1fcharge_payment\x1fsucceeded"] == str(EVENTS).encode(), \
            "no task was dispatched twice"
        assert "reclaimed" in procs.log("engine-2")
    finally:
        r.close()
        procs.stop_all()
        server.stop()
