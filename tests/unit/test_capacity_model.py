"""bench/capacity_model.py: the capacity plan of deploy/CAPACITY.md from measured per-item figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.capacity_model import (
    LIFETIME,
    RETENTION_DEFAULTS,
    Shape,
    bytes_per_run,
    main,
    max_retention_s,
    plan,
    plan_table,
)
from orchestrator.settings import Settings

# Round numbers, so every expected value can be worked out by hand.
FIGURES = {
    "bytes_per_run_by_class": {"results_entries": 100.0, "event_entries": 200.0, "decisions": 50.0,
                               "dedup_keys": 10.0, "attempt_logs": 0.0, "rq_jobs": 1000.0, "runs": 400.0,
                               "other": 0.0},
    "bytes_per_task_by_class": {"results_entries": 100.0, "event_entries": 0.0, "decisions": 0.0,
                                "dedup_keys": 0.0, "attempt_logs": 0.0, "rq_jobs": 1000.0, "runs": 200.0,
                                "other": -3.0},
    "commands_per_run": 40.0, "commands_per_item": 20.0,
    "redis_cpu_ms_per_run": 0.1, "redis_cpu_ms_per_item": 0.05,
    "engine_cpu_ms_per_run": 0.5, "engine_cpu_ms_per_item": 0.25,
    "worker_cpu_ms_per_run": 0.3, "worker_cpu_ms_per_item": 0.3,
    "redis_usec_per_run": 150.0, "redis_usec_per_item": 50.0,
}
RETENTION = {"results_retention_s": 100.0, "events_retention_s": 1000.0, "event_dedup_window_s": 10.0,
             "job_result_ttl_s": 1.0, "run_retention_s": 10_000.0}


def test_defaults_are_the_settings_defaults() -> None:
    settings = Settings()
    assert set(LIFETIME.values()) == set(RETENTION_DEFAULTS)
    for name, seconds in RETENTION_DEFAULTS.items():
        assert getattr(settings, name) == seconds


def test_bytes_per_run_adds_the_extra_tasks_and_never_goes_negative() -> None:
    one, three = bytes_per_run(FIGURES, 1), bytes_per_run(FIGURES, 3)
    assert one["runs"] == 400.0 and three["runs"] == 800.0
    assert three["results_entries"] == 300.0 and three["event_entries"] == 200.0
    assert three["other"] == 0.0  # a measured -3 B per task is noise, not memory given back


def test_memory_is_rate_times_bytes_times_lifetime_per_class() -> None:
    out = plan(FIGURES, Shape(runs_per_min=600), RETENTION)  # 10 runs/s
    assert out["runs_per_s"] == 10.0
    assert out["memory_bytes_by_class"]["runs"] == 10 * 400 * 10_000
    assert out["memory_bytes_by_class"]["event_entries"] == 10 * 200 * 1000
    assert out["memory_bytes_by_class"]["decisions"] == 10 * 50 * 1000
    assert out["memory_bytes_by_class"]["dedup_keys"] == 10 * 10 * 10
    assert out["memory_bytes_by_class"]["results_entries"] == 10 * 100 * 100
    assert out["memory_bytes_by_class"]["rq_jobs"] == 10 * 1000 * 1
    assert out["memory_bytes"] == sum(out["memory_bytes_by_class"].values())


def test_cpu_commands_engines_and_workers() -> None:
    out = plan(FIGURES, Shape(runs_per_min=6000, tasks_per_run=3, task_s=2.0, worker_concurrency=4,
                              target_utilisation=0.5))  # 100 runs/s, 300 tasks/s
    assert out["tasks_per_s"] == 300.0
    assert out["redis_commands_per_s"] == 100 * (40 + 2 * 20)
    assert out["redis_cpu_cores"] == pytest.approx(100 * 0.2 / 1000)
    assert out["redis_runs_per_s_per_core"] == round(1000 / 0.2 * 0.5)
    assert out["engine_cpu_cores"] == pytest.approx(100 * 1.0 / 1000)
    assert out["engines"] == 1
    # Little's law: 300 tasks/s x (2 s + 0.3 ms) = 600.09 in flight, / 0.5 utilisation -> 1,201 slots
    assert out["worker_slots"] == 1201
    assert out["worker_processes"] == 301  # ceil(1201 / 4)


def test_engines_grow_with_the_rate() -> None:
    assert plan(FIGURES, Shape(runs_per_min=60 * 1400))["engines"] == 1  # 0.7 cores at 0.7 -> 1
    assert plan(FIGURES, Shape(runs_per_min=60 * 1500))["engines"] == 2


def test_max_retention_fits_the_budget_exactly() -> None:
    shape = Shape(runs_per_min=600)
    budget = 1e9
    seconds = max_retention_s(FIGURES, shape, budget, RETENTION)
    at = plan(FIGURES, shape, {**RETENTION, "run_retention_s": seconds, "events_retention_s": seconds})
    assert at["memory_bytes"] == pytest.approx(budget, rel=1e-6)
    assert max_retention_s(FIGURES, shape, 1.0, RETENTION) == 0.0  # not even the fixed classes fit


def test_table_has_one_column_per_rate() -> None:
    lines = plan_table(FIGURES, [Shape(1000), Shape(10_000)], RETENTION, budget_bytes=1e9)
    assert lines[0] == "| | 1,000 runs/min | 10,000 runs/min |"
    assert all(line.count("|") == 4 for line in lines)
    assert any(line.startswith("| **Redis memory, total") for line in lines)


def test_main_reads_a_bench_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = tmp_path / "20260101-000000.json"
    meta = {"started": "2026-01-01T00:00:00+00:00", "cpus": 2, "redis": "7.0.15"}
    result.write_text(json.dumps({"meta": meta, "orch": {"capacity": {"figures": FIGURES}}}))
    assert main([str(result), "--retention", "run_retention_s=3600"]) == 0
    out = capsys.readouterr().out
    assert "20260101-000000.json" in out and "run_retention_s=1.0 h" in out
    assert "| 100,000 runs/min |" in out.splitlines()[2]
