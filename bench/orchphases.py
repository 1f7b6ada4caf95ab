"""Phases 2 to 3b, once per worker engine (idle latency, hop latency, sustained runs/s, fan-out), and the
capacity (3e) and curves (3f) phases, which borrow the same engine-and-workers setup.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from typing import Any

import redis

from bench import capacity, curves
from bench.common import (
    CHAIN_EVENT,
    CHAIN_RULE,
    EVENT_TYPE,
    FANOUT_EVENT,
    FANOUT_RULE,
    POLL_S,
    PREFIX,
    PROJECT,
    RULE,
    SOURCE,
    TASK_NODE,
    BenchError,
    log,
    pct,
)
from bench.probe import Probe, emit_one, start_orch, wait_run
from bench.stack import Stack, commands_between, per, stats, usec_per
from orchestrator import Client, Settings
from orchestrator.cli.wiring import load_project
from orchestrator.workflows.runs import RunStatus, derive_run_id

# -- phases 2 to 3b: engine and workers, once per worker engine ---------------------------------------------


def _ms_stats(series: dict[str, list[float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, values in series.items():
        out[f"{name}_ms_p50"] = round(pct(values, 0.5), 3)
        out[f"{name}_ms_p99"] = round(pct(values, 0.99), 3)
    return out


def phase_idle(stack: Stack, probe: Probe, client: Client, samples: int, engine: str) -> dict[str, Any]:
    log(f"[{engine}] idle: {samples} events one at a time, each run finished before the next")
    series: dict[str, list[float]] = {"start": [], "succeeded": [], "created": [], "dispatch": [], "finish": []}
    for i in range(samples):
        run_id, t = emit_one(client, i)
        run = wait_run(stack, probe, run_id, 30)
        task = run.tasks[TASK_NODE]
        if task.started_at is None or run.finished_at is None:
            raise BenchError(f"run {run_id}: no start or finish time recorded")
        started, created, finished = task.started_at.timestamp(), run.created_at.timestamp(), run.finished_at.timestamp()
        series["start"].append((started - t) * 1000)        # emit -> task started (worker clock)
        series["succeeded"].append((finished - t) * 1000)   # emit -> run succeeded (engine clock)
        series["created"].append((created - t) * 1000)      # emit -> run created and task queued (engine)
        series["dispatch"].append((started - created) * 1000)   # queued -> a worker started the task
        series["finish"].append((finished - started) * 1000)    # started -> the engine finished the run
        if (i + 1) % 50 == 0 or i + 1 == samples:
            log(f"[{engine}] idle: {i + 1}/{samples} samples, emit -> task start p50 {pct(series['start'], 0.5):.2f} ms")
    out: dict[str, Any] = {"samples": samples, **_ms_stats(series)}
    out["start_ms_max"] = round(max(series["start"]), 3)
    return out


def phase_hop(stack: Stack, probe: Probe, client: Client, samples: int, engine: str) -> dict[str, Any]:
    """Two-task chains a -> b at idle, one at a time: a's finished record (worker clock) -> b started."""
    log(f"[{engine}] hop: {samples} chain runs (a -> b) one at a time, each finished before the next")
    series: dict[str, list[float]] = {"hop": [], "engine": [], "pickup": [], "a_done_to_run_done": []}
    for i in range(samples):
        run_id, _ = emit_one(client, i, event_type=CHAIN_EVENT, rule=CHAIN_RULE)
        run = wait_run(stack, probe, run_id, 30)
        a, b = run.tasks["a"], run.tasks["b"]
        if a.finished_at is None or b.queued_at is None or b.started_at is None or run.finished_at is None:
            raise BenchError(f"chain run {run_id}: a's finish or b's queue/start time not recorded")
        done, queued, started = a.finished_at.timestamp(), b.queued_at.timestamp(), b.started_at.timestamp()
        series["hop"].append((started - done) * 1000)       # a done -> b started (both worker clocks)
        series["engine"].append((queued - done) * 1000)     # a done -> the engine queued b
        series["pickup"].append((started - queued) * 1000)  # b queued -> a worker started it
        series["a_done_to_run_done"].append((run.finished_at.timestamp() - done) * 1000)
        if (i + 1) % 50 == 0 or i + 1 == samples:
            log(f"[{engine}] hop: {i + 1}/{samples} runs, a done -> b started p50 {pct(series['hop'], 0.5):.2f} ms")
    out: dict[str, Any] = {"samples": samples, **_ms_stats(series)}
    out["hop_ms_max"] = round(max(series["hop"]), 3)
    return out


def background_rate(admin: redis.Redis, seconds: float = 2.0) -> float:
    """Commands/s the idle engine and workers send (polling, heartbeats): the noise under phase 3."""
    before = stats(admin)
    time.sleep(seconds)
    after = stats(admin)
    return round(sum(commands_between(before, after, {}).values()) / seconds, 1)


def _cpu_report(cpu_before: dict[str, float], cpu_after: dict[str, float], elapsed: float,
                n: int) -> dict[str, dict[str, float]]:
    cpu = {role: cpu_after[role] - cpu_before.get(role, 0.0) for role in cpu_after}
    if "machine" in cpu:  # what the rest of the machine used meanwhile (other users' processes: noise)
        cpu["other"] = max(0.0, cpu["machine"] - sum(v for r, v in cpu.items() if r != "machine"))
    return {"cpu_cores_busy": {role: round(sec / elapsed, 2) for role, sec in cpu.items()},
            "cpu_ms_per_task": {role: round(sec * 1000 / n, 3) for role, sec in cpu.items()}}


def _engine_commits(delta: dict[str, int]) -> int:
    """The engine's commit attempts in a `commands_between` delta: each WATCHes what it reads (its runs, the
    rule-set version) once (lua.watch_and_read). orch's fast workers never WATCH; RQ's own worker does, so
    for `--engine rq` this counts RQ's transactions too."""
    return delta.get("watch", 0)


def phase_sustained(stack: Stack, probe: Probe, client: Client, admin: redis.Redis, n: int,
                    engine: str) -> dict[str, Any]:
    base_ok, base_failed = probe.counts()
    events = [{"type": EVENT_TYPE, "data": {"n": i}} for i in range(n)]
    log(f"[{engine}] sustained: emitting {n:,} events at once, then waiting for {n:,} runs to succeed")
    probe.own.clear()
    before, cpu_before = stats(admin), stack.cpu_seconds()
    t0 = time.time()
    event_ids = client.emit_many(events)
    emit_s = time.time() - t0
    done = last_done = 0
    last_change = next_report = time.monotonic()
    while done < n:
        succeeded, failed = probe.counts()
        done = succeeded - base_ok
        if failed > base_failed:
            raise BenchError(f"sustained: {failed - base_failed} runs failed (logs: {stack.tmp})")
        now = time.monotonic()
        if done != last_done:
            last_done, last_change = done, now
        elif now - last_change > 60:
            raise BenchError(f"sustained: stalled at {done:,}/{n:,} runs for 60s (logs: {stack.tmp})")
        if now >= next_report:
            log(f"[{engine}] sustained: {done:,}/{n:,} runs succeeded")
            stack.check_alive()
            next_report = now + 1.0
        if done < n:
            time.sleep(POLL_S)
    elapsed = time.time() - t0
    after, cpu_after = stats(admin), stack.cpu_seconds()
    log(f"[{engine}] sustained: {n:,}/{n:,} runs succeeded in {elapsed:.2f}s ({n / elapsed:,.0f}/s)")
    delta = commands_between(before, after, probe.own)
    last_finish = _last_finish(probe, event_ids)
    commits = _engine_commits(delta)
    return {"runs": n, "seconds": round(elapsed, 3), "emit_seconds": round(emit_s, 3),
            "runs_per_s": round(n / elapsed, 1),
            "runs_per_s_by_last_finished_at": round(n / max(1e-6, last_finish - t0), 1),
            "commands_per_run": round(sum(delta.values()) / n, 2),
            "commands_per_run_by_command": per(delta, n),
            "redis_usec_per_run_by_command": usec_per(before, after, n),
            "engine_commits": commits, "runs_per_engine_commit": round(n / commits, 1) if commits else None,
            **_cpu_report(cpu_before, cpu_after, elapsed, n)}


def _last_finish(probe: Probe, event_ids: list[str]) -> float:
    """The latest `finished_at` among the phase's runs (engine clock), read after the measurement."""
    pipe = probe.redis.pipeline(transaction=False)
    for event_id in event_ids:
        pipe.hget(probe.keys.run(derive_run_id(RULE, SOURCE, event_id)), "meta")
    latest = 0.0
    for raw in pipe.execute():
        meta = json.loads(raw)
        latest = max(latest, datetime.fromisoformat(meta["finished_at"]).timestamp())
    return latest


def phase_fanout(stack: Stack, probe: Probe, client: Client, admin: redis.Redis, n: int, engine: str,
                 limit_s: float) -> dict[str, Any]:
    """One run of items -> work.map(items) -> fan_in over `n` no-op items."""
    log(f"[{engine}] fan-out: one bench_fanout run over {n:,} items (items -> work.map(items) -> fan_in)")
    probe.own.clear()
    read0, _, _ = probe.backlog()
    before, cpu_before = stats(admin), stack.cpu_seconds()
    run_id, t0 = emit_one(client, n, event_type=FANOUT_EVENT, rule=FANOUT_RULE)
    max_lag = max_queued = 0
    last_progress: tuple[int, int] = (-1, -1)
    last_change = time.monotonic()
    next_report, deadline = last_change + 2.0, last_change + limit_s
    timeline: list[dict[str, float | None]] = []  # every 2 s: progress, engine commits and CPU in the interval
    snap, snap_cpu, snap_t, snap_read = before, cpu_before, time.time(), read0
    status = None
    while (status := probe.outcome(run_id)) is None:
        now = time.monotonic()
        read, lag, queued = probe.backlog()
        max_lag, max_queued = max(max_lag, lag), max(max_queued, queued)
        if (read, queued) != last_progress:
            last_progress, last_change = (read, queued), now
        if now >= next_report:
            cur, cur_cpu, cur_t = stats(admin), stack.cpu_seconds(), time.time()
            probe.own["info"] = probe.own.get("info", 0) + 1
            commits = cur["by_command"].get("watch", 0) - snap["by_command"].get("watch", 0)
            span_s = max(1e-6, cur_t - snap_t)
            busy = {r: (cur_cpu.get(r, 0.0) - snap_cpu.get(r, 0.0)) / span_s for r in cur_cpu}
            busy["other"] = max(0.0, busy.get("machine", 0.0) - sum(v for r, v in busy.items() if r != "machine"))
            timeline.append({"t_s": round(cur_t - t0, 2), "records_read": read - read0, "not_yet_read": lag,
                             "queued": queued, "engine_commits": commits,
                             "ms_per_commit": round(span_s * 1000 / commits, 1) if commits else None,
                             "records_per_commit": round((read - snap_read) / commits, 1) if commits else None,
                             **{f"{r}_cores": round(busy[r], 2) for r in ("engine", "worker", "redis", "other")}})
            log(f"[{engine}] fan-out: {cur_t - t0:5.1f} s: results records read by the engine {read - read0:,} "
                f"(not yet read: {lag:,}); jobs queued {queued:,}; engine {commits} commits"
                + (f" ({span_s * 1000 / commits:.0f} ms each, {(read - snap_read) / commits:.0f} records each)"
                   if commits else "")
                + f"; cores busy: engine {busy['engine']:.2f}, workers {busy['worker']:.2f}, redis {busy['redis']:.2f}"
                f", other processes {busy['other']:.2f}")
            snap, snap_cpu, snap_t, snap_read = cur, cur_cpu, cur_t, read
            stack.check_alive()
            next_report = now + 2.0
        if now > deadline or now - last_change > 60:
            why = "stalled for 60 s" if now - last_change > 60 else f"not finished within {limit_s:.0f} s"
            log(f"[{engine}] fan-out: {why}; skipped (logs: {stack.tmp})")
            return {"items": n, "error": f"{why}: the engine had read {read - read0:,} results records "
                    f"(~2 per item), {queued:,} jobs still queued", "seconds": round(time.time() - t0, 1),
                    "timeline": timeline}
        time.sleep(0.05)
    t_end = time.time()
    after, cpu_after = stats(admin), stack.cpu_seconds()
    read_end, _, _ = probe.backlog()
    run = probe.run(run_id)
    if status != RunStatus.SUCCEEDED:
        raise BenchError(f"fan-out run {run_id} {status}: {run.error}")
    children = [t for t in run.tasks.values() if t.parent == "work"]
    items_task, fan_in = run.tasks["items"], run.tasks["fan_in"]
    if len(children) != n or any(c.queued_at is None or c.started_at is None or c.finished_at is None
                                 for c in children) or fan_in.started_at is None or fan_in.queued_at is None \
            or items_task.finished_at is None or run.finished_at is None:
        raise BenchError(f"fan-out run {run_id}: {len(children)} items of {n}, or times not recorded")
    if any(c.attempt != 1 for c in children):
        log(f"[{engine}] fan-out: {sum(c.attempt != 1 for c in children)} items ran more than once")
    first_queued = min(c.queued_at.timestamp() for c in children)  # type: ignore[union-attr]
    last_queued = max(c.queued_at.timestamp() for c in children)  # type: ignore[union-attr]
    first_started = min(c.started_at.timestamp() for c in children)  # type: ignore[union-attr]
    last_finished = max(c.finished_at.timestamp() for c in children)  # type: ignore[union-attr]
    fan_in_started, fan_in_queued = fan_in.started_at.timestamp(), fan_in.queued_at.timestamp()
    items_done = items_task.finished_at.timestamp()
    span = fan_in_started - first_queued
    elapsed = t_end - t0
    delta = commands_between(before, after, probe.own)
    commits = _engine_commits(delta)
    records = read_end - read0
    cpu = _cpu_report(cpu_before, cpu_after, elapsed, n)
    engine_cpu = cpu_after.get("engine", 0.0) - cpu_before.get("engine", 0.0)
    log(f"[{engine}] fan-out: {n:,} items in {span:.2f} s ({n / span:,.0f} item task runs/s); run took "
        f"{run.duration_s:.2f} s; {commits} engine commits")
    return {
        "items": n, "run": run_id, "seconds": round(elapsed, 3),
        "item_runs_per_s": round(n / span, 1),
        "item_runs_per_s_until_last_item_done": round(n / max(1e-6, last_finished - first_queued), 1),
        "item_runs_per_s_first_started_to_last_done": round(n / max(1e-6, last_finished - first_started), 1),
        "first_item_queued_to_fan_in_started_s": round(span, 3),
        "run_duration_s": round(run.duration_s or 0.0, 3),
        "emit_to_run_finished_s": round(run.finished_at.timestamp() - t0, 3),
        "emit_to_items_done_s": round(items_done - t0, 3),
        "items_done_to_first_item_queued_ms": round((first_queued - items_done) * 1000, 1),
        "items_queued_spread_ms": round((last_queued - first_queued) * 1000, 1),
        "first_item_queued_to_started_ms": round((first_started - first_queued) * 1000, 1),
        "last_item_done_to_fan_in_queued_ms": round((fan_in_queued - last_finished) * 1000, 1),
        "fan_in_queued_to_started_ms": round((fan_in_started - fan_in_queued) * 1000, 1),
        "commands_per_item": round(sum(delta.values()) / n, 2),
        "commands_per_item_by_command": per(delta, n),
        "redis_usec_per_item_by_command": usec_per(before, after, n),
        "results_records": records, "records_per_item": round(records / n, 2),
        "engine_commits": commits,
        "records_per_engine_commit": round(records / commits, 1) if commits else None,
        "engine_ms_per_commit_wall": round(elapsed * 1000 / commits, 1) if commits else None,
        "engine_cpu_ms_per_commit": round(engine_cpu * 1000 / commits, 1) if commits else None,
        "max_results_not_yet_read": max_lag, "max_jobs_queued": max_queued,
        **cpu, "timeline": timeline,
    }


def phase_orch(stack: Stack, args: argparse.Namespace, sizes: dict[str, int], engine: str) -> dict[str, Any]:
    """Every engine-and-workers phase for one worker engine (`fast` or `rq`), on a flushed Redis."""
    admin = redis.Redis.from_url(stack.url)
    admin.flushall()
    probe = Probe(stack.url)
    out: dict[str, Any] = {}
    with Client(settings=Settings(redis_url=stack.url, key_prefix=PREFIX), source=SOURCE) as client:
        out["workers"] = start_orch(stack, engine, args, probe, client)
        if args.only != "fanout":
            out["idle"] = phase_idle(stack, probe, client, sizes["samples"], engine)
            out["hop"] = phase_hop(stack, probe, client, sizes["hops"], engine)
            background = background_rate(admin)
            out["sustained"] = phase_sustained(stack, probe, client, admin, sizes["n"], engine)
            out["sustained"]["background_commands_per_s"] = background
        fanout = sizes["fanout"] if engine == "fast" else sizes["fanout_rq"]
        if fanout > 0:
            out["fanout"] = phase_fanout(stack, probe, client, admin, fanout, engine, args.fanout_limit)
        else:
            out["fanout"] = {"items": 0, "error": "skipped (--fanout-rq 0)" if engine == "rq" else "skipped"}
    stack.stop_orch()
    probe.redis.close()
    admin.close()
    return out


# -- phases 3e and 3f: capacity and curves --------------------------------------------------------------


def phase_capacity(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """The capacity figures (bench/capacity.py), with `orch engine` and the fast workers on a flushed Redis."""
    admin = redis.Redis.from_url(stack.url)
    admin.flushall()
    probe = Probe(stack.url)
    stack.tag = "capacity-"
    with Client(settings=Settings(redis_url=stack.url, key_prefix=PREFIX), source=SOURCE) as client:
        workers = start_orch(stack, "fast", args, probe, client)
        runner = capacity.Runner(stack, probe, client, admin, stats, commands_between, log)
        try:
            out = capacity.measure(runner, load_project(PROJECT), capacity.QUICK_SIZES if args.quick else
                                   capacity.SIZES, (RULE, EVENT_TYPE), (FANOUT_RULE, FANOUT_EVENT), "bench_one")
        except capacity.CapacityError as exc:
            raise BenchError(str(exc)) from exc
    stack.stop_orch()
    probe.redis.close()
    admin.close()
    return {"workers": workers, **out}


def phase_curves(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """The flatness curves (bench/curves.py), lent this script's process and measurement helpers."""
    deps = curves.Deps(stack, start_orch, Probe, phase_sustained, pct, log, load_project(PROJECT), PROJECT, PREFIX)
    try:
        return curves.phase_curves(deps, args, capacity.used_memory)
    except curves.CurveError as exc:
        raise BenchError(str(exc)) from exc
