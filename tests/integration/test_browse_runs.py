"""Paging through retained runs as the UI does: newest first, filtered by index, never re-showing or
skipping a run, even when a batch created hundreds in one millisecond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis

from orchestrator import task, workflow
from orchestrator.state.browse import RunQuery, page_runs
from orchestrator.state.keys import Keys
from orchestrator.state.store import RunStore
from orchestrator.workflows.lifecycle import new_run
from orchestrator.workflows.runs import EventRef, RunStatus

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@task
def step(x: int) -> int:
    return x


@workflow
def alpha(x: int) -> None:
    step(x)


@workflow
def beta(x: int) -> None:
    step(x)


def fill(r: redis.Redis, count: int, *, same_ms: int = 0) -> RunStore:
    """`count` runs, one per second from T0, alternating workflows and rules; the last `same_ms` share a ms."""
    store = RunStore(r, Keys(), retention_s=3600)
    pipe = r.pipeline(transaction=False)
    for i in range(count):
        spec = (alpha if i % 2 else beta).spec
        at = T0 + timedelta(seconds=min(i, count - same_ms))
        change = new_run(f"run{i:05d}", spec, f"rule-{i % 3}", EventRef(f"ev-{i}", "/t", "t"), {"x": i}, at)
        if i % 5 == 0:
            change.run.status = RunStatus.FAILED
        store.write_change(pipe, change)
    pipe.execute()
    return store


def all_pages(store: RunStore, **filters: object) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = page_runs(store, RunQuery(cursor=cursor, limit=7, **filters))  # type: ignore[arg-type]
        seen += [meta["id"] for meta in page.runs]
        if not page.next_cursor or not page.runs:
            return seen
        cursor = page.next_cursor


def test_pages_cover_every_run_once_newest_first(r: redis.Redis) -> None:
    store = fill(r, 60)

    seen = all_pages(store)

    assert seen == [f"run{i:05d}" for i in reversed(range(60))]


def test_runs_created_in_one_millisecond_are_paged_without_loss(r: redis.Redis) -> None:
    store = fill(r, 300, same_ms=250)

    seen = all_pages(store)

    assert len(seen) == len(set(seen)) == 300


def test_filters_by_index_by_rule_by_event_and_by_time(r: redis.Redis) -> None:
    store = fill(r, 60)

    failed_alpha = all_pages(store, status="failed", workflow="alpha")
    rule = all_pages(store, rule="rule-1")
    event = page_runs(store, RunQuery(event_id="ev-42"))
    window = all_pages(store, since=T0 + timedelta(seconds=10), until=T0 + timedelta(seconds=19))

    assert failed_alpha == [f"run{i:05d}" for i in reversed(range(60)) if i % 5 == 0 and i % 2]
    assert rule == [f"run{i:05d}" for i in reversed(range(60)) if i % 3 == 1]
    assert [m["id"] for m in event.runs] == ["run00042"] and event.scanned <= 60
    assert window == [f"run{i:05d}" for i in reversed(range(10, 20))]


def test_a_filter_no_index_holds_stops_at_the_scan_limit_and_says_so(r: redis.Redis) -> None:
    store = fill(r, 120)

    page = page_runs(store, RunQuery(rule="rule-none", scan_limit=50))

    assert page.runs == [] and page.exhausted_scan and 50 <= page.scanned < 120 and page.next_cursor
