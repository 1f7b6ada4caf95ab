"""The catalogue and the workers/queues views against a real Redis, a real engine and real workers (in-process).

An engine that starts writes the project catalogue, restores it if it goes missing and never overwrites
another engine's; whatever Redis holds is read back as untrusted. A worker blocked in a task (on a Redis
list the test fills) shows as running it, with the job behind it queued, and counts what it finished.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from executors.dispatch import RQDispatcher
from executors.worker import run_worker
from orchestrator.catalog import build_catalog, catalog_view, queues_view, read_catalog, workers_view
from orchestrator.catalog.fleet import THROUGHPUT_TTL_S, FinishedCounter
from orchestrator.catalog.store import MAX_CATALOG_BYTES
from orchestrator.cli.wiring import load_project
from orchestrator.engine import Engine
from orchestrator.jsonutil import dumps
from orchestrator.metrics import WEBHOOK_REQUESTS, MetricsBatch
from orchestrator.project import Project
from orchestrator.settings import Settings
from orchestrator.state import rq_keys
from orchestrator.state.keys import Keys
from orchestrator.workflows.runs import derive_run_id

from ..catalog_project import catalog_project
from ..helpers import wait_for
from ..inproc import Stack

KEYS = Keys()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return load_project(catalog_project(tmp_path / "shop"))


@pytest.fixture
def shop_settings(redis_url: str, project: Project) -> Settings:
    return Settings(redis_url=redis_url, project=project.root)


def engine_of(r: redis.Redis, settings: Settings, project: Project) -> Engine:
    """An engine that is not looping: its maintenance is run by hand (`maintain(force=True)`)."""
    engine = Engine(r, settings, project, RQDispatcher(r, settings))
    engine.consumer.ensure_groups()
    return engine


@contextmanager
def running_engine(r: redis.Redis, settings: Settings, project: Project) -> Iterator[Engine]:
    engine = Engine(r, settings, project, RQDispatcher(r, settings), consumer="catalog-test")
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield engine
    finally:
        stop.set()
        thread.join(30)


def test_a_starting_engine_writes_the_catalogue_of_its_project(r: redis.Redis, shop_settings: Settings,
                                                               project: Project) -> None:
    assert read_catalog(r, KEYS) is None

    with running_engine(r, shop_settings, project):
        catalog = wait_for(lambda: read_catalog(r, KEYS), 30, "the engine to write the catalogue")

    assert "error" not in catalog
    assert catalog == build_catalog(project, datetime.fromisoformat(catalog["written_at"]))
    assert [w["name"] for w in catalog["workflows"]] == ["batch", "greet", "hold"]


def test_the_view_adds_next_firings_and_webhook_deliveries(r: redis.Redis, shop_settings: Settings,
                                                           project: Project) -> None:
    engine_of(r, shop_settings, project).maintain(force=True)
    counts = MetricsBatch()
    counts.inc(WEBHOOK_REQUESTS, "shop", "accepted", n=3)
    counts.inc(WEBHOOK_REQUESTS, "shop", "unauthorized")
    counts.inc(WEBHOOK_REQUESTS, "elsewhere", "unknown_hook")
    pipe = r.pipeline()
    counts.flush(pipe, KEYS)
    pipe.hset(KEYS.metric(WEBHOOK_REQUESTS.name), mapping={"no-separator": "1", "shop\x1fodd": "many"})
    pipe.execute()

    view = catalog_view(r, KEYS, datetime(2026, 3, 28, 12, tzinfo=UTC))

    assert view is not None
    (schedule,) = view["schedules"]
    assert len(schedule["next"]) == 5
    assert schedule["next"][0] == {"utc": "2026-03-29T01:30:00Z", "local": "2026-03-29T03:30:00+02:00",
                                   "dst": "moved: 02:30 does not exist on 2026-03-29 (DST gap), fires at 03:30"}
    assert view["hooks"][0]["deliveries"] == {"accepted": 3, "unauthorized": 1}


def test_the_engine_restores_a_missing_catalogue_but_keeps_another_engines(r: redis.Redis, shop_settings: Settings,
                                                                          project: Project) -> None:
    engine = engine_of(r, shop_settings, project)
    engine.maintain(force=True)
    r.delete(KEYS.catalog)

    engine.maintain(force=True)
    restored = read_catalog(r, KEYS)
    newer = {**build_catalog(project, datetime.now(UTC)), "project": {"name": "newer", "path": "/srv/newer"}}
    r.set(KEYS.catalog, dumps(newer))
    engine.maintain(force=True)

    assert restored is not None and restored["project"]["name"] == "shop"
    assert read_catalog(r, KEYS) == newer


def _valid(project: Project) -> dict[str, Any]:
    return build_catalog(project, datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("case", ["not json", "a list", "a newer format", "a wrong field", "a naive time",
                                  "a hash", "too large"])
def test_a_catalogue_that_cannot_be_read_says_to_restart_the_engine(r: redis.Redis, project: Project,
                                                                    case: str) -> None:
    valid = _valid(project)
    values: dict[str, bytes] = {
        "not json": b"{\"rules\": [", "a list": b"[]", "a newer format": dumps({**valid, "format": 2}),
        "a wrong field": dumps({**valid, "rules": [{"name": 1}]}),
        "a naive time": dumps({**valid, "written_at": "2026-01-01T00:00:00"}),
        "too large": b" " * (MAX_CATALOG_BYTES + 1)}
    if case == "a hash":
        r.hset(KEYS.catalog, "rules", "[]")
    else:
        r.set(KEYS.catalog, values[case])

    read = read_catalog(r, KEYS)
    view = catalog_view(r, KEYS, datetime.now(UTC))

    assert read is not None and set(read) == {"error"}
    assert "unreadable" in read["error"] and "restart `orch engine`" in read["error"]
    assert view == read


def test_a_schedule_whose_expression_cannot_be_read_gets_an_error_not_firings(r: redis.Redis, project: Project) -> None:
    valid = _valid(project)
    broken = {**valid["schedules"][0], "cron": "every full moon", "timezone": "Europe/Berlin"}
    r.set(KEYS.catalog, dumps({**valid, "schedules": [broken]}))

    view = catalog_view(r, KEYS, datetime.now(UTC))

    assert view is not None
    (schedule,) = view["schedules"]
    assert schedule["next"] == [] and "every full moon" in schedule["next_error"]


# -- workers and queues --------------------------------------------------------------------------------------------


def _worker(r: redis.Redis, name: str) -> dict[str, Any] | None:
    return next((w for w in workers_view(r, KEYS, datetime.now(UTC)) if w["name"] == name), None)


def _queue(r: redis.Redis, queue: str = "default") -> dict[str, Any]:
    return next(q for q in queues_view(r, KEYS, datetime.now(UTC)) if q["queue"] == queue)


def test_a_worker_shows_the_task_it_runs_with_the_next_job_queued_and_counts_what_it_finished(
        r: redis.Redis, shop_settings: Settings, project: Project, redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOG_TEST_REDIS_URL", redis_url)
    stack = Stack(r, shop_settings, project)
    events = [stack.emit("hold.requested", {"gate": gate}, source="/test") for gate in ("gate-1", "gate-2")]
    stack.engine.step(block=False)
    runs = {derive_run_id("hold", "/test", event) for event in events}
    assert _queue(r)["queued"] == 2
    worker = threading.Thread(target=run_worker, args=(r, shop_settings, project, ["default"]),
                              kwargs={"burst": True, "name": "gatekeeper"}, daemon=True)
    worker.start()
    try:
        busy = wait_for(lambda: (w := _worker(r, "gatekeeper")) and w["current"] and w, 30,
                        "the worker to publish the task it runs")
        queue = _queue(r)
    finally:
        r.rpush("gate-1", "open")
        r.rpush("gate-2", "open")
        worker.join(60)

    assert (busy["alive"], busy["state"], busy["queues"], busy["engine"]) == (True, "busy", ["default"], "fast")
    current = busy["current"]
    assert current["run"] in runs and (current["node"], current["task"], current["attempt"]) == (
        "wait_for_gate", "wait_for_gate", 1)
    assert current["running_s"] >= 0 and current["started_at"].endswith("Z")
    assert busy["heartbeat_age_s"] < 30
    assert (queue["queued"], queue["started"], queue["failed"]) == (1, 1, 0), "one job runs, the next waits"
    assert queue["oldest_age_s"] >= 0 and queue["oldest_enqueued_at"].endswith("Z")
    done = _queue(r)
    assert (done["queued"], done["started"], done["oldest_age_s"]) == (0, 0, None)
    assert sum(m["count"] for m in done["finished_per_minute"]) == 2
    assert len(done["finished_per_minute"]) == 10
    assert _worker(r, "gatekeeper") is None, "a worker that left is no longer listed"


def test_rqs_own_worker_counts_what_it_finished_too(r: redis.Redis, shop_settings: Settings, project: Project,
                                                   redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOG_TEST_REDIS_URL", redis_url)
    stack = Stack(r, shop_settings, project)
    r.rpush("gate-open", "open")
    stack.emit("hold.requested", {"gate": "gate-open"}, source="/test")
    stack.engine.step(block=False)

    run_worker(r, shop_settings, project, ["default"], burst=True, engine="rq")

    assert sum(m["count"] for m in _queue(r)["finished_per_minute"]) == 1


def test_throughput_is_what_workers_counted_over_the_last_minutes(r: redis.Redis) -> None:
    counter = FinishedCounter(KEYS)
    now_s = 1_800_000_000.0 + 30  # half a minute into a minute
    pipe = r.pipeline()
    pipe.sadd(rq_keys.QUEUES, rq_keys.queue_key(KEYS.queue_name("default")))
    for ago_s in (700, 310, 310, 70, 5):  # one too old for the list, two before the rate's window
        for command in counter.commands(KEYS.queue_name("default"), now_s - ago_s):
            pipe.execute_command(*command)
    pipe.execute()

    (queue,) = queues_view(r, KEYS, datetime.fromtimestamp(now_s, UTC))

    assert [m["count"] for m in queue["finished_per_minute"]] == [0, 0, 0, 0, 2, 0, 0, 0, 1, 1]
    assert queue["finished_per_minute"][-1]["minute"] == "2027-01-15T08:00:00Z"
    assert queue["throughput_per_min"] == round(2 / 4.5, 3), "the current minute counts for the half gone"
    assert 0 < r.ttl(KEYS.throughput("default", int(now_s // 3600))) <= THROUGHPUT_TTL_S


def test_no_queues_and_no_workers_are_empty_views(r: redis.Redis) -> None:
    now = datetime.now(UTC)

    assert (workers_view(r, KEYS, now), queues_view(r, KEYS, now)) == ([], [])
