"""bench/retained_runs.py: the Lua replay writes runs exactly as RunStore.write_change does, only faster.

The curves bench measures `GET /runs` and memory per run over a million runs written this way; if the
replay drifted from what the engine writes (a field, an index, the TTL), those figures would describe
something orch never stores.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import redis

from bench.retained_runs import RunWriter, check_written, finished_run, run_template
from orchestrator.cli.wiring import load_project
from orchestrator.state.keys import Keys
from orchestrator.state.store import RunStore
from orchestrator.workflows.runs import RunStatus

PROJECT = Path(__file__).resolve().parents[2] / "bench" / "project"


def _without(fields: dict[bytes, bytes], *ids: str) -> dict[bytes, bytes]:
    out = {}
    for key, value in fields.items():
        for i, text in enumerate(ids):
            value = value.replace(text.encode(), f"<id{i}>".encode())
        out[key] = value
    return out


def test_replayed_runs_match_the_store_s_own_write(r: redis.Redis) -> None:
    project = load_project(PROJECT)
    store = RunStore(r, Keys("orch"), retention_s=3600)
    now = datetime.now(UTC)
    template = run_template(r, store, project, now)
    writer = RunWriter(r, template, 50)
    writer.write_to(50, lambda _: None)
    check_written(store, writer, template)

    real = finished_run(project, "f" * 32, now)
    pipe = r.pipeline(transaction=False)
    store.write_change(pipe, real)
    pipe.execute()

    replayed = writer.run_id(7)
    event_id = store.get(replayed).event.id  # type: ignore[union-attr]
    assert _without(r.hgetall(store.keys.run(replayed)), replayed, event_id) == \
        _without(r.hgetall(store.keys.run(real.run.id)), real.run.id, "f" * 32)
    assert 0 < r.ttl(store.keys.run(replayed)) <= 3600
    for index in (store.keys.runs, store.keys.runs_by_status(RunStatus.SUCCEEDED),
                  store.keys.runs_by_workflow("bench_one"), store.keys.runs_by_workflow_status("bench_one", "succeeded")):
        assert r.zcard(index) == 51
    listed = [m["id"] for m in store.list(limit=51)]  # newest first: the replayed runs by their number
    assert listed.index(writer.run_id(49)) < listed.index(writer.run_id(48)) < listed.index(writer.run_id(0))
