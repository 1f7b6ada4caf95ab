"""Phase 3c: one `Engine.maintain(force=True)` pass in this process, with few and with many dedup keys and
retained finished runs; its time must stay flat as the keyspace grows.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import redis

from bench.common import CHAIN_EVENT, CHAIN_RULE, PREFIX, PROJECT, SOURCE, BenchError, log
from bench.stack import Stack, commands_between, per, stats, usec_per
from executors.dispatch import RQDispatcher
from orchestrator import Settings
from orchestrator.cli.wiring import load_project
from orchestrator.engine import Engine
from orchestrator.project import Project
from orchestrator.state.keys import Keys
from orchestrator.state.store import RunStore
from orchestrator.workflows.advance import Change, apply_record
from orchestrator.workflows.lifecycle import new_run
from orchestrator.workflows.records import RecordKind, TaskRecord
from orchestrator.workflows.runs import EventRef, RunStatus, TaskState, derive_run_id
from orchestrator.workflows.spec import WorkflowSpec

MAINTENANCE_RUNNING = 200  # running runs at both sizes: work in flight, which the stall scan reads each pass
MAINTENANCE_PASSES = 15    # timed passes per size (after one untimed)
MAINTENANCE_WORKFLOW = "bench_chain"  # a -> b: finished runs with two tasks, written as the engine writes them

# Dedup keys as publish.lua writes them (lib/publish_one.lua): <p>:dedup:<32 hex digits> -> the entry id of
# the event, with the dedup window as TTL; the digest here is sha1 cut to blake2b-128's length.
#   KEYS  none (the keys are made up here; a bench Redis is not a cluster)
#   ARGV  the key prefix <p>:dedup:, first and last number, TTL in seconds, the entry ids' milliseconds
_DEDUP_LUA = """
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  redis.call('SET', ARGV[1] .. string.sub(redis.sha1hex('bench' .. i), 1, 32), ARGV[5] .. '-' .. i, 'EX', ARGV[4])
end
return 1
"""


def _bench_run(spec: WorkflowSpec, event_id: str, now: datetime, *, finished: bool) -> Change:
    """A run of `spec` as the engine writes it when it starts (its first task queued) or, `finished`, once
    every task succeeded (the workers' records applied by the engine's own pure code)."""
    run_id = derive_run_id(CHAIN_RULE, SOURCE, event_id)
    change = new_run(run_id, spec, CHAIN_RULE, EventRef(event_id, SOURCE, CHAIN_EVENT), {"value": 1}, now,
                     {"n": 1})
    while finished and change.run.status is RunStatus.RUNNING:
        queued = [t for t in change.run.tasks.values() if t.state is TaskState.QUEUED]
        if not queued:
            raise BenchError(f"maintenance: a {spec.name} run neither finished nor queued a task")
        for task in queued:
            record = TaskRecord(RecordKind.SUCCEEDED, run_id, task.node, task.attempt, now.timestamp(),
                                worker="bench-worker", result=1, duration_s=0.001)
            apply_record(change, record, now)
    return change


def _write_runs(client: redis.Redis, store: RunStore, spec: WorkflowSpec, n: int, *, finished: bool,
                what: str) -> None:
    """`n` runs, 1,000 per pipeline (each with its index entries, as RunStore.write_change queues them)."""
    now = datetime.now(UTC)
    done, next_report = 0, time.perf_counter() + 1.0
    while done < n:
        size = min(1000, n - done)
        pipe = client.pipeline(transaction=False)
        for i in range(done, done + size):
            store.write_change(pipe, _bench_run(spec, f"{what}-{i}", now, finished=finished))
        pipe.execute()
        done += size
        if time.perf_counter() >= next_report or done == n:
            log(f"maintenance: {done:,}/{n:,} {what} runs written")
            next_report = time.perf_counter() + 1.0


def _write_dedup_keys(client: redis.Redis, keys: Keys, n: int, ttl_s: int) -> None:
    script = client.register_script(_DEDUP_LUA)
    ms = int(time.time() * 1000)
    done, next_report = 0, time.perf_counter() + 1.0
    while done < n:
        size = min(50_000, n - done)
        script(args=[keys.dedup(""), done, done + size - 1, ttl_s, ms])
        done += size
        if time.perf_counter() >= next_report or done == n:
            log(f"maintenance: {done:,}/{n:,} dedup keys written")
            next_report = time.perf_counter() + 1.0


def _maintenance_size(stack: Stack, project: Project, dedup: int, finished: int) -> dict[str, Any]:
    """Time Engine.maintain(force=True) on a flushed Redis holding `dedup` dedup keys, `finished` retained
    finished runs and MAINTENANCE_RUNNING running runs."""
    client = redis.Redis.from_url(stack.url)
    client.flushall()
    settings = Settings(redis_url=stack.url, project=PROJECT, key_prefix=PREFIX)
    engine = Engine(client, settings, project, RQDispatcher(client, settings), consumer="bench-maintenance")
    engine.consumer.ensure_groups()
    spec = project.workflows[MAINTENANCE_WORKFLOW].spec
    log(f"maintenance: {dedup:,} dedup keys, {finished:,} finished runs, {MAINTENANCE_RUNNING} running runs")
    _write_dedup_keys(client, engine.keys, dedup, int(settings.event_dedup_window_s))
    _write_runs(client, engine.store, spec, finished, finished=True, what="finished")
    _write_runs(client, engine.store, spec, MAINTENANCE_RUNNING, finished=False, what="running")
    if client.zcard(engine.keys.runs_by_status("succeeded")) != finished:
        raise BenchError("maintenance: the finished runs are not all in their index")
    engine.maintain(force=True)  # untimed: connections, the first reads
    before = stats(client)
    times_ms, cpu_ms = [], []
    for _ in range(MAINTENANCE_PASSES):
        t0, cpu0 = time.perf_counter(), time.process_time()
        engine.maintain(force=True)
        times_ms.append((time.perf_counter() - t0) * 1000)
        cpu_ms.append((time.process_time() - cpu0) * 1000)  # the engine's own CPU: less noisy than wall time
    after = stats(client)
    keys_total = int(client.dbsize())
    client.close()
    delta = commands_between(before, after, {})
    for snapshot in (before, after):  # Redis time of the passes, not of our INFO
        snapshot["usec_by_command"].pop("info", None)
    usec = sum(after["usec_by_command"].values()) - sum(before["usec_by_command"].values())
    times_ms.sort()
    cpu_ms.sort()
    log(f"maintenance: {times_ms[len(times_ms) // 2]:.2f} ms per pass (median of {MAINTENANCE_PASSES})")
    return {"dedup_keys": dedup, "finished_runs": finished, "running_runs": MAINTENANCE_RUNNING, "keys": keys_total,
            "passes": MAINTENANCE_PASSES, "ms_per_pass_median": round(times_ms[len(times_ms) // 2], 3),
            "ms_per_pass_min": round(times_ms[0], 3), "ms_per_pass_max": round(times_ms[-1], 3),
            "engine_cpu_ms_per_pass_median": round(cpu_ms[len(cpu_ms) // 2], 3),
            "used_memory": before["used_memory"], "used_memory_mb": round(before["used_memory"] / 2**20, 1),
            "commands_per_pass": round(sum(delta.values()) / MAINTENANCE_PASSES, 1),
            "commands_per_pass_by_command": per(delta, MAINTENANCE_PASSES, top=20),
            "round_trips_per_pass": round((after["reads"] - before["reads"] - 1) / MAINTENANCE_PASSES, 1),
            "redis_us_per_pass": round(usec / MAINTENANCE_PASSES, 1),
            "redis_us_per_pass_by_command": usec_per(before, after, MAINTENANCE_PASSES, top=20)}


def phase_maintenance(stack: Stack, sizes: dict[str, int]) -> dict[str, Any]:
    """One maintenance pass of the engine (sweep with its stall scan, dead letters and reclaiming, trimming),
    in this process, with few and with many dedup keys and retained finished runs: it must stay flat."""
    project = load_project(PROJECT)
    small = _maintenance_size(stack, project, 1000, 1000)
    large = _maintenance_size(stack, project, sizes["maintenance_dedup"], sizes["maintenance_runs"])
    return {"small": small, "large": large,
            "time_ratio": round(large["ms_per_pass_median"] / small["ms_per_pass_median"], 2),
            "cpu_ratio": round(large["engine_cpu_ms_per_pass_median"] / small["engine_cpu_ms_per_pass_median"], 2),
            "redis_time_ratio": round(large["redis_us_per_pass"] / small["redis_us_per_pass"], 2),
            "memory_ratio": round(large["used_memory"] / small["used_memory"], 1)}
