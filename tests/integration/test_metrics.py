"""Metrics: what /metrics exports after real work, in valid Prometheus text format."""

from __future__ import annotations

import subprocess
import time

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from executors.heartbeat import Heartbeat
from executors.queues import RQQueueInspector
from orchestrator.cli.wiring import load_project
from orchestrator.metrics import RedisCollector
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys

from ..helpers import EXAMPLES, PROMTOOL_MISSING, RedisServer, promtool
from ..inproc import Stack


def _exposition(r: redis.Redis) -> str:
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
    return _exposition(r)


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
    assert value("orch_event_to_run_seconds_count", workflow="process_order") == 2  # the duplicate made none
    assert value("orch_redis_up") == 1


def test_no_label_carries_an_unbounded_value(worked: str) -> None:
    for (_, labels), _value in _samples(worked).items():
        for name, _label_value in labels:
            assert name not in {"run", "run_id", "event", "event_id", "job", "job_id", "id"}


def _check_metrics(text: str) -> None:
    tool = promtool()
    if tool is None:
        pytest.skip(PROMTOOL_MISSING)
    result = subprocess.run([tool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_the_exposition_passes_promtool(worked: str) -> None:
    _check_metrics(worked)


def _heartbeat(r: redis.Redis, settings: Settings, name: str, queues: list[str]) -> Heartbeat:
    return Heartbeat(r, Keys(), settings, name, queues, engine="fast", rq_registration=False)


def test_queue_age_capacity_load_and_worker_gauges_follow_the_queue_and_the_heartbeats(
        r: redis.Redis, settings: Settings) -> None:
    stack = Stack(r, settings, load_project(EXAMPLES))
    before = time.time()
    stack.emit("order.created", {"order_id": "A", "amount": 3, "items": []}, source="/shop", id="1")
    stack.engine.step(block=False)  # the run's first tasks are queued; no worker takes them
    (default,) = RQQueueInspector(r, Keys()).queue_stats()
    assert default.queue == "default" and default.queued == 2
    assert default.oldest_enqueued_at_s is not None and before - 1 < default.oldest_enqueued_at_s <= time.time()

    samples = _samples(_exposition(r))
    assert samples[("orch_queue_capacity", frozenset({("queue", "default")}))] == 0
    assert samples[("orch_queue_load", frozenset({("queue", "default")}))] == 2, "no worker: the load is the work"
    assert 0 <= samples[("orch_queue_oldest_job_age_seconds", frozenset({("queue", "default")}))] < 60
    assert samples[("orch_worker_busy_ratio", frozenset())] == 0
    assert samples[("orch_worker_last_seen_timestamp_seconds", frozenset())] == 0, "no worker ever registered"

    idle, busy, elsewhere = (_heartbeat(r, settings, "w-idle", ["default"]), _heartbeat(r, settings, "w-busy", ["default"]),
                             _heartbeat(r, settings, "w-other", ["other"]))
    busy.activity.begin("job-1", {"run": "r", "node": "n", "attempt": 1}, "t", 10)
    for heartbeat in (idle, busy, elsewhere):
        heartbeat.beat()
    samples = _samples(_exposition(r))
    assert samples[("orch_queue_capacity", frozenset({("queue", "default")}))] == 2
    assert samples[("orch_queue_load", frozenset({("queue", "default")}))] == 1
    assert samples[("orch_workers", frozenset({("state", "busy")}))] == 1
    assert samples[("orch_workers", frozenset({("state", "idle")}))] == 2
    assert samples[("orch_worker_busy_ratio", frozenset())] == 1 / 3
    assert before <= samples[("orch_worker_last_seen_timestamp_seconds", frozenset())] <= time.time()

    r.delete(Keys().worker("w-busy"), Keys().worker("w-other"))  # their heartbeats expired
    samples = _samples(_exposition(r))
    assert samples[("orch_worker_busy_ratio", frozenset())] == 0
    assert samples[("orch_queue_load", frozenset({("queue", "default")}))] == 2
    for heartbeat in (idle, busy, elsewhere):
        heartbeat.stop()


def test_the_engine_heartbeat_is_exported_as_its_last_seen_time(r: redis.Redis, settings: Settings) -> None:
    assert _samples(_exposition(r))[("orch_engine_last_seen_timestamp_seconds", frozenset())] == 0
    stack = Stack(r, settings, load_project(EXAMPLES))
    before = time.time()
    stack.engine.maintain(force=True)
    last_seen = _samples(_exposition(r))[("orch_engine_last_seen_timestamp_seconds", frozenset())]
    assert before - 0.001 <= last_seen <= time.time()
    assert r.zrange(Keys().engines, 0, -1) == [b"engine-test"]


def test_a_scrape_while_redis_is_down_answers_orch_redis_up_0_alone() -> None:
    server = RedisServer()
    client = server.client()
    assert _samples(_exposition(client))[("orch_redis_up", frozenset())] == 1
    server.stop()
    text = _exposition(client)
    assert _samples(text) == {("orch_redis_up", frozenset()): 0}
    client.close()
    _check_metrics(text)


def test_garbage_in_a_heartbeat_or_a_job_hash_does_not_break_the_scrape(r: redis.Redis, settings: Settings) -> None:
    keys = Keys()
    r.hset(keys.worker("w-bad"), mapping={"state": b"\xff\xfe", "queues": b"default,\xff", "job": b""})
    r.zadd(keys.workers, {"w-bad": int(time.time() * 1000)})
    r.sadd("rq:queues", "rq:queue:orch.default")
    r.rpush("rq:queue:orch.default", "not-a-job", "j2")
    r.hset("rq:job:not-a-job", "enqueued_at", b"yesterday\xff")
    samples = _samples(_exposition(r))
    assert samples[("orch_redis_up", frozenset())] == 1
    assert samples[("orch_workers", frozenset({("state", "other")}))] == 1
    assert samples[("orch_queue_capacity", frozenset({("queue", "default")}))] == 1
    assert samples[("orch_queue_oldest_job_age_seconds", frozenset({("queue", "default")}))] == 0
