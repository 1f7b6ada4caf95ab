"""The capacity plan of deploy/CAPACITY.md, computed from the figures `bench/run.py --only capacity` measured.

    .venv/bin/python bench/capacity_model.py bench/results/<stamp>.json [--task-s 1] [--tasks-per-run 1]
    .venv/bin/python bench/capacity_model.py --fill deploy/CAPACITY.md    rewrite the document's plan tables

Pure functions (no I/O but `main`): `plan` turns the per-item figures (the `figures` of a result file's
`orch.capacity`) into Redis memory, Redis CPU, engine and worker counts for one rate of runs; `plan_table`
renders several rates as Markdown; `max_retention_s` is the longest run and event retention a memory budget
allows.

What a run leaves in Redis is counted by class, each with the lifetime the setting of LIFETIME gives it:
memory = runs/s x bytes per run of that class x lifetime, summed over the classes (Little's law for bytes).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.settings import Settings

# The setting whose value is how long each class of what a run leaves stays in Redis.
LIFETIME = {"results_entries": "results_retention_s", "event_entries": "events_retention_s",
            "decisions": "events_retention_s", "dedup_keys": "event_dedup_window_s",
            "attempt_logs": "run_retention_s", "rq_jobs": "job_result_ttl_s", "runs": "run_retention_s",
            "other": "run_retention_s"}  # what no class explains: counted with the longest lifetime
RETENTION_DEFAULTS = {name: float(Settings.model_fields[name].default) for name in set(LIFETIME.values())}
RATES_PER_MIN = (1_000, 10_000, 100_000)


@dataclass(frozen=True)
class Shape:
    """The load: runs per minute, tasks per run, a task's duration, worker concurrency, target utilisation."""

    runs_per_min: float
    tasks_per_run: int = 1
    task_s: float = 1.0
    worker_concurrency: int = 1
    target_utilisation: float = 0.7  # of a core (Redis, engine) or of a worker slot: headroom for bursts


def _per_run(figures: dict[str, Any], name: str, tasks: int) -> float:
    """A per-run cost for runs of `tasks` tasks: one task's run plus the fan-out item cost per extra task."""
    return float(figures[f"{name}_per_run"]) + (tasks - 1) * float(figures[f"{name}_per_item"])


def bytes_per_run(figures: dict[str, Any], tasks: int) -> dict[str, float]:
    """Redis bytes a finished run of `tasks` tasks leaves, by class."""
    run, task = figures["bytes_per_run_by_class"], figures["bytes_per_task_by_class"]
    return {name: max(0.0, float(run.get(name, 0.0)) + (tasks - 1) * float(task.get(name, 0.0)))
            for name in LIFETIME}


def plan(figures: dict[str, Any], shape: Shape, retention: dict[str, float] | None = None) -> dict[str, Any]:
    """Redis memory and CPU, engines and workers for `shape` with `retention` (settings name -> seconds;
    orch's defaults for those not given)."""
    lifetimes = {**RETENTION_DEFAULTS, **(retention or {})}
    runs_s = shape.runs_per_min / 60.0
    tasks_s = runs_s * shape.tasks_per_run
    memory = {name: runs_s * b * lifetimes[LIFETIME[name]] for name, b in bytes_per_run(figures, shape.tasks_per_run).items()}
    redis_cpu_ms = _per_run(figures, "redis_cpu_ms", shape.tasks_per_run)
    engine_cpu_ms = _per_run(figures, "engine_cpu_ms", shape.tasks_per_run)
    worker_cpu_ms_per_task = _per_run(figures, "worker_cpu_ms", shape.tasks_per_run) / shape.tasks_per_run
    in_flight = tasks_s * (shape.task_s + worker_cpu_ms_per_task / 1000.0)  # Little's law: L = lambda x W
    slots = math.ceil(in_flight / shape.target_utilisation)
    engine_cores = runs_s * engine_cpu_ms / 1000.0
    return {
        "runs_per_s": round(runs_s, 2), "tasks_per_s": round(tasks_s, 2),
        "memory_bytes_by_class": {k: round(v) for k, v in memory.items()},
        "memory_bytes": round(sum(memory.values())),
        "redis_commands_per_s": round(runs_s * _per_run(figures, "commands", shape.tasks_per_run)),
        "redis_cpu_cores": round(runs_s * redis_cpu_ms / 1000.0, 3),
        "redis_runs_per_s_per_core": round(1000.0 / redis_cpu_ms * shape.target_utilisation) if redis_cpu_ms else None,
        "engine_cpu_cores": round(engine_cores, 3),
        "engines": max(1, math.ceil(engine_cores / shape.target_utilisation)),
        "worker_slots": max(1, slots),
        "worker_processes": max(1, math.ceil(slots / shape.worker_concurrency)),
        "worker_cpu_cores_overhead": round(tasks_s * worker_cpu_ms_per_task / 1000.0, 3),
    }


def max_retention_s(figures: dict[str, Any], shape: Shape, budget_bytes: float,
                    retention: dict[str, float] | None = None,
                    scaled: tuple[str, ...] = ("run_retention_s", "events_retention_s")) -> float:
    """The longest retention, the same for every setting of `scaled` (runs and events by default), whose
    memory fits `budget_bytes` with the other classes at `retention`; 0 when those alone do not fit."""
    fixed = plan(figures, shape, {**(retention or {}), **dict.fromkeys(scaled, 0.0)})["memory_bytes"]
    runs_s = shape.runs_per_min / 60.0
    per_s = runs_s * sum(b for name, b in bytes_per_run(figures, shape.tasks_per_run).items() if LIFETIME[name] in scaled)
    return max(0.0, (budget_bytes - fixed) / per_s) if per_s > 0 else math.inf


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 1e3:,.0f} kB"


def _duration(s: float) -> str:
    if s >= 86400:
        return f"{s / 86400:.1f} d"
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def plan_table(figures: dict[str, Any], shapes: list[Shape], retention: dict[str, float] | None = None,
               budget_bytes: float | None = None) -> list[str]:
    """Markdown: one column per shape (rate), one row per planned quantity."""
    plans = [plan(figures, s, retention) for s in shapes]
    head = " | ".join(f"{s.runs_per_min:,.0f} runs/min" for s in shapes)
    lines = [f"| | {head} |", "|---|" + "---:|" * len(shapes)]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | {' | '.join(cells)} |")

    row("runs/s, tasks/s", [f"{p['runs_per_s']:,.1f}, {p['tasks_per_s']:,.1f}" for p in plans])
    for name in LIFETIME:
        if any(p["memory_bytes_by_class"][name] for p in plans):
            row(f"Redis memory: {name.replace('_', ' ')}", [_size(p["memory_bytes_by_class"][name]) for p in plans])
    row("**Redis memory, total (used_memory)**", [f"**{_size(p['memory_bytes'])}**" for p in plans])
    row("Redis commands/s", [f"{p['redis_commands_per_s']:,}" for p in plans])
    row("Redis CPU (cores; one core is the ceiling)", [f"{p['redis_cpu_cores']:.2f}" for p in plans])
    row("Redis ceiling: runs/s per core at the target", [f"{p['redis_runs_per_s_per_core']:,}" for p in plans])
    row("engine CPU (cores)", [f"{p['engine_cpu_cores']:.2f}" for p in plans])
    row("engines (at the target utilisation)", [str(p["engines"]) for p in plans])
    row(f"worker slots (Little's law, {shapes[0].task_s:g} s tasks)", [f"{p['worker_slots']:,}" for p in plans])
    row("worker CPU, orch's own per-task overhead (cores)", [f"{p['worker_cpu_cores_overhead']:.2f}" for p in plans])
    if budget_bytes:
        row(f"longest run and events retention in {_size(budget_bytes)}",
            [_duration(max_retention_s(figures, s, budget_bytes, retention)) for s in shapes])
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("result", type=Path, help="a bench/results/*.json holding orch.capacity")
    ap.add_argument("--tasks-per-run", type=int, default=1)
    ap.add_argument("--task-s", type=float, default=1.0, help="a task's duration (default 1 s)")
    ap.add_argument("--budget-gb", type=float, default=16.0, help="Redis memory budget for the retention row")
    ap.add_argument("--retention", action="append", default=[], metavar="SETTING=SECONDS",
                    help="e.g. run_retention_s=86400 (repeatable); orch's defaults otherwise")
    return ap.parse_args(argv)


def render(args: argparse.Namespace, data: dict[str, Any]) -> list[str]:
    """The plan for `args` from one bench result: a line saying where it comes from, then the table."""
    figures = data["orch"]["capacity"]["figures"]
    retention = {k: float(v) for k, v in (item.split("=", 1) for item in args.retention)}
    shapes = [Shape(rate, args.tasks_per_run, args.task_s) for rate in RATES_PER_MIN]
    meta = data["meta"]
    source = (f"Plan from {args.result.name} ({meta['started']}, {meta['cpus']} CPUs, redis {meta['redis']}); "
              f"{args.tasks_per_run} task(s) per run; retention: "
              + ", ".join(f"{k}={_duration(v)}" for k, v in sorted({**RETENTION_DEFAULTS, **retention}.items())))
    return [source, "", *plan_table(figures, shapes, retention, args.budget_gb * 1e9)]


PLAN_BLOCK = re.compile(r"<!-- capacity-plan: (.*?) -->\n.*?<!-- /capacity-plan -->", re.S)


def fill_document(text: str, load: Callable[[Path], dict[str, Any]]) -> str:
    """`text` with each `<!-- capacity-plan: ARGS -->` ... `<!-- /capacity-plan -->` block holding what this
    script prints for ARGS (`load` reads a result file)."""
    def block(match: re.Match[str]) -> str:
        args = parse_args(shlex.split(match.group(1)))
        return "\n".join([f"<!-- capacity-plan: {match.group(1)} -->", *render(args, load(args.result)),
                          "<!-- /capacity-plan -->"])
    return PLAN_BLOCK.sub(block, text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--fill"] and len(argv) == 2:
        doc = Path(argv[1])
        doc.write_text(fill_document(doc.read_text(), lambda path: dict(json.loads(path.read_text()))))
        return 0
    args = parse_args(argv)
    print("\n".join(render(args, json.loads(args.result.read_text()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
