"""Metrics: what /metrics exports after real work, in valid Prometheus text format."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from executors.queues import RQQueueInspector
from orchestrator.cli.wiring import load_project
from orchestrator.metrics import RedisCollector
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys

from ..helpers import EXAMPLES, ROOT
from .test_engine import Stack


def _exposition(r: redis.Redis, settings: Settings) -> str:
    registry = CollectorRegistry()
    registry.register(RedisCollector(r, Keys(), RQQueueInspector(r, Keys()), version="test"))
    return generate_latest(registry).decode()


@pytest.fixture
def worked(r: redis.Redis, settings: Settings) -> str:
    """The exposition after two orders ran (one failed) and a duplicate event arrived."""
    stack = Stack(r, settings, load_project(EXAMPLES))
    stack.emit("order.created", {"order_id": "A", "amount": 3, "items": []}, source="/shop", id="1")
    stack.emit("order.created", {"order_id": "B", "amount": -1}, source="/shop", id="2")
    stack.emit("order.created", {"order_id": "A", "amount": 3}, source="/shop", id="1")
    stack.drain()
    return _exposition(r, settings)


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def test_counters_histograms_and_gauges_reflect_the_work(worked: str) -> None:
    samples = _samples(worked)

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    assert value("orch_events_received_total", trigger="custom", result="accepted") == 2
    assert value("orch_events_received_total", trigger="custom", result="duplicate") == 1
    assert value("orch_rule_evaluations_total", rule="process-new-orders", result="matched") == 2
    assert value("orch_workflow_runs_started_total", workflow="process_order") == 2
    assert value("orch_workflow_runs_finished_total", workflow="process_order", status="succeeded") == 1
    assert value("orch_workflow_runs_finished_total", workflow="process_order", status="failed") == 1
    assert value("orch_tasks_finished_total", workflow="process_order", task="charge_payment", status="failed") == 1
    assert value("orch_task_duration_seconds_count", workflow="process_order", task="reserve_stock",
                 status="succeeded") == 2
    assert value("orch_workflow_run_duration_seconds_bucket", workflow="process_order", status="succeeded",
                 le="+Inf") == 1
    assert value("orch_stream_pending_entries", stream="events", group="engine") == 0
    # the two events, and what their runs announced: 2 started, 1 succeeded, 1 failed, 1 task failed
    assert value("orch_stream_length", stream="events") == 7
    assert value("orch_events_received_total", trigger="engine", result="accepted") == 5
    assert value("orch_queue_jobs", queue="default", state="failed") == 1
    assert value("orch_queue_jobs", queue="default", state="queued") == 0
    assert value("orch_workflow_runs_in_progress") == 0


def test_no_label_carries_an_unbounded_value(worked: str) -> None:
    for (_, labels), _value in _samples(worked).items():
        for name, _label_value in labels:
            assert name not in {"run", "run_id", "event", "event_id", "job", "job_id", "id"}


def _promtool() -> str | None:
    local = ROOT / ".cache" / "tools" / "promtool"
    return os.environ.get("ORCH_PROMTOOL") or shutil.which("promtool") or (str(local) if local.exists() else None)


def test_the_exposition_passes_promtool(worked: str) -> None:
    promtool = _promtool()
    if promtool is None:
        pytest.skip("promtool not available (`make test` fetches it from Debian's prometheus package)")
    result = subprocess.run([promtool, "check", "metrics"], input=worked.encode(), capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
