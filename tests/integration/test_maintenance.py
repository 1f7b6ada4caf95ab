"""⑧ Engine maintenance against a real Redis: its cost follows the work in flight, never the keyspace.

What is measured is what Redis itself counts (INFO): `total_reads_processed`, the reads of client sockets,
which counts round trips (a pipeline of small commands is one read); `cmdstat_*`, the commands by name
(Lua's inner commands included); `keyspace_hits` + `keyspace_misses`, the keys looked up for reading.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from executors.dispatch import RQDispatcher
from orchestrator.cli.wiring import load_project
from orchestrator.engine import Engine
from orchestrator.events.publish import dedup_digest
from orchestrator.project import Project
from orchestrator.settings import Settings
from orchestrator.workflows.advance import Change, apply_record
from orchestrator.workflows.lifecycle import new_run
from orchestrator.workflows.records import RecordKind, TaskRecord
from orchestrator.workflows.runs import EventRef, RunStatus, TaskState
from orchestrator.workflows.spec import WorkflowSpec

from ..helpers import EXAMPLES
from ..projects import make_project

CHAIN = {"chain": """\
    from orchestrator import task, workflow

    @task
    def step(value: int) -> int:
        return value

    @workflow
    def chain(value: int = 0):
        step.with_options(name="b")(step.with_options(name="a")(value))
    """}
SCANS = {"scan", "keys", "randomkey", "dbsize", "sscan", "hscan", "zscan"}


@dataclass(frozen=True)
class Cost:
    """What Redis counted while an action ran (less the INFO that closes the measure)."""

    round_trips: int
    calls: dict[str, int]
    lookups: int


def _snapshot(admin: redis.Redis) -> tuple[int, dict[str, int], int]:
    info = admin.execute_command("INFO", "stats", "commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")}
    lookups = int(info["keyspace_hits"]) + int(info["keyspace_misses"])
    return int(info["total_reads_processed"]), calls, lookups


def cost(admin: redis.Redis, action: Callable[[], object]) -> Cost:
    reads, calls, lookups = _snapshot(admin)
    action()
    reads_after, calls_after, lookups_after = _snapshot(admin)
    delta = {name: n - calls.get(name, 0) - (name == "info") for name, n in calls_after.items()}
    return Cost(reads_after - reads - 1, {k: v for k, v in delta.items() if v}, lookups_after - lookups)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return load_project(make_project(tmp_path, rules="rules:\n  - {name: r, type: t.x, workflow: chain}\n",
                                     workflows=CHAIN))


@pytest.fixture
def engine(r: redis.Redis, redis_url: str, project: Project) -> Engine:
    settings = Settings(redis_url=redis_url, project=project.root)
    engine = Engine(r, settings, project, RQDispatcher(r, settings), consumer="engine-test")
    engine.consumer.ensure_groups()
    return engine


@pytest.fixture
def spec(project: Project) -> WorkflowSpec:
    return project.workflows["chain"].spec


def _run(spec: WorkflowSpec, run_id: str, now: datetime, *, finished: bool) -> Change:
    """A run as the engine writes it when it starts (first task queued) or, `finished`, once every task
    succeeded (the workers' records applied by the engine's own pure code)."""
    change = new_run(run_id, spec, "r", EventRef(f"event-{run_id}", "/test", "t.x"), {"value": 1}, now)
    while finished and change.run.status is RunStatus.RUNNING:
        queued = [t for t in change.run.tasks.values() if t.state is TaskState.QUEUED]
        assert queued, "the run neither finished nor queued a task"
        for task in queued:
            record = TaskRecord(RecordKind.SUCCEEDED, run_id, task.node, task.attempt, now.timestamp(),
                                worker="w", result=1, duration_s=0.001)
            apply_record(change, record, now)
    return change


def write_runs(r: redis.Redis, engine: Engine, spec: WorkflowSpec, tag: str, n: int, *,
               finished: bool) -> None:
    now = datetime.now(UTC)
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        engine.store.write_change(pipe, _run(spec, f"{tag}-{i}", now, finished=finished))
    pipe.execute()


def write_dedup_keys(r: redis.Redis, engine: Engine, n: int) -> list[str]:
    """Keys as the publish script writes them: <p>:dedup:<digest of (source, id)> -> entry id, TTL the
    dedup window."""
    keys = [engine.keys.dedup(dedup_digest("/test", f"event-{i}")) for i in range(n)]
    pipe = r.pipeline(transaction=False)
    for i, key in enumerate(keys):
        pipe.set(key, f"1700000000000-{i}", ex=int(engine.settings.event_dedup_window_s))
    pipe.execute()
    return keys


def test_the_stall_scan_reads_300_running_runs_in_a_few_round_trips(engine: Engine, r: redis.Redis,
        spec: WorkflowSpec) -> None:
    engine.maintain(force=True)
    idle = cost(r, lambda: engine.maintain(force=True))
    write_runs(r, engine, spec, "running", 300, finished=False)

    busy = cost(r, lambda: engine.maintain(force=True))

    assert busy.calls["hgetall"] - idle.calls["hgetall"] == 300, "the scan read every running run"
    extra = busy.round_trips - idle.round_trips
    assert extra <= 10, f"{extra} more round trips to read 300 runs (pipelined chunks expected)"
    one_by_one = cost(r, lambda: [engine.store.get(f"running-{i}") for i in range(300)])
    assert one_by_one.round_trips >= 300, "negative control: the measure sees one round trip per HGETALL"


def test_a_maintenance_pass_does_not_touch_dedup_keys_or_finished_runs(engine: Engine, r: redis.Redis,
        spec: WorkflowSpec) -> None:
    write_runs(r, engine, spec, "running", 20, finished=False)
    write_runs(r, engine, spec, "early", 10, finished=True)
    engine.maintain(force=True)
    small = cost(r, lambda: engine.maintain(force=True))

    dedup = write_dedup_keys(r, engine, 10_000)
    write_runs(r, engine, spec, "done", 1000, finished=True)
    assert r.zcard(engine.keys.runs_by_status("succeeded")) == 1010
    large = cost(r, lambda: engine.maintain(force=True))

    assert not SCANS & large.calls.keys(), f"the pass walked the keyspace: {large.calls}"
    assert large.calls == small.calls, "the same commands, however many dedup keys and finished runs"
    assert large.lookups == small.lookups, "no more keys looked up"
    assert abs(large.round_trips - small.round_trips) <= 2
    ttls = r.pipeline(transaction=False)
    for key in dedup[::100]:
        ttls.ttl(key)
    assert all(ttl > 0 for ttl in ttls.execute()), "dedup keys keep their own expiry"


def test_a_corrupt_running_run_is_skipped_not_fatal(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    """Runs are read back from Redis, which is untrusted: garbage in one hash must not stop the engine."""
    engine = Engine(r, Settings(redis_url=redis_url, project=EXAMPLES), load_project(EXAMPLES),
                    RQDispatcher(r, Settings(redis_url=redis_url)), consumer="corrupt-test")
    engine.consumer.ensure_groups()
    r.hset("orch:run:garbage", mapping={"meta": "not json", "spec": "{}"})
    r.zadd("orch:runs:status:running", {"garbage": 1})

    engine.maintain(force=True)

    assert engine.store.get_many(["garbage"]) == []
