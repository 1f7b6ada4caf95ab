"""② Reading events back: `orch events list` / GET /events and `orch events tail` build the same records,
and both get past stream entries orch did not write."""

from __future__ import annotations

import threading

import redis

from orchestrator import Client
from orchestrator.events.recent import recent_events
from orchestrator.events.tail import follow, start_id
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys

KEYS = Keys()


def test_list_and_tail_show_the_same_records_and_skip_foreign_entries(settings: Settings, r: redis.Redis) -> None:
    with Client(settings=settings, source="/shop") as client:
        client.emit("order.created", {"n": 1}, id="o-1", extensions={"tenant": "acme"})
        r.xadd(KEYS.events, {"written-by": "someone else"})  # not an orch event
        r.xadd(KEYS.events, {"e": "{not json"})
        client.emit("order.paid", {"n": 2}, id="o-2")

    listed = recent_events(r, KEYS, limit=10)
    tailed = list(follow(r, KEYS.events, "0-0", count=2, block_s=0.1, stop=threading.Event()))

    assert [e["id"] for e in listed] == ["o-2", "o-1"]
    assert tailed == listed[::-1]
    assert listed[1]["tenant"] == "acme" and listed[1]["entry_id"] and listed[1]["received_at"].endswith("Z")


def test_a_duration_counts_back_from_redis_time(r: redis.Redis) -> None:
    seconds, micros = r.time()
    redis_ms = int(seconds) * 1000 + int(micros) // 1000

    after = start_id(r, KEYS.events, "5m")

    assert abs(int(after.partition("-")[0]) - (redis_ms - 300_000)) < 1000
    assert start_id(r, KEYS.events, "5m", now_s=1_000_000.0) == f"{1_000_000_000 - 300_000}-0"
