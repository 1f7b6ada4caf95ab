"""② Publishing: events land in the stream once per (source, id), in batches, with their metrics."""

from __future__ import annotations

import pytest
import redis

import orchestrator.events.client as client_module
from orchestrator import Client, Event, EventError, emit
from orchestrator.errors import EventTooLargeError
from orchestrator.jsonutil import loads
from orchestrator.settings import Settings

STREAM = "orch:events"


def test_an_event_is_published_once_per_source_and_id(settings: Settings, r: redis.Redis) -> None:
    with Client(settings=settings) as client:
        event_id = client.emit("order.created", {"order_id": "A-1"}, source="/shop")
        replay = client.publish([Event.new("order.created", {"order_id": "changed"}, source="/shop", id=event_id)])

    assert replay[0].duplicate and replay[0].event_id == event_id
    assert r.xlen(STREAM) == 1
    stored = loads(r.xrange(STREAM)[0][1][b"e"])
    assert stored["data"] == {"order_id": "A-1"}, "the first accepted event is kept, the duplicate is not"


def test_an_event_repeated_within_one_call_is_published_once(settings: Settings, r: redis.Redis) -> None:
    # publish.lua reads every dedup key of a call with one MGET, before it writes any: a repeat inside the
    # call must still count as a duplicate of its first, as must an event accepted by an earlier call.
    with Client(settings=settings) as client:
        earlier = client.emit("x.y", {"n": 0}, source="/s", id="e0")
        out = client.publish([{"type": "x.y", "id": "e1", "source": "/s", "data": {"n": 1}},
                              {"type": "x.y", "id": earlier, "source": "/s", "data": {"n": 2}},
                              {"type": "x.y", "id": "e1", "source": "/s", "data": {"n": 3}},
                              {"type": "x.y", "id": "e2", "source": "/s", "data": {"n": 4}}])

    assert [p.duplicate for p in out] == [False, True, True, False]
    assert out[2].entry_id == out[0].entry_id, "a repeat names the entry of the first"
    assert [loads(fields[b"e"])["data"]["n"] for _, fields in r.xrange(STREAM)] == [0, 1, 4]
    counts = r.hgetall("orch:metrics:orch_events_received_total")
    assert counts == {b"custom\x1faccepted": b"3", b"custom\x1fduplicate": b"2"}


def test_the_same_id_from_another_source_is_another_event(settings: Settings, r: redis.Redis) -> None:
    with Client(settings=settings) as client:
        client.emit("order.created", {}, source="/shop", id="1")
        client.emit("order.created", {}, source="/warehouse", id="1")
    assert r.xlen(STREAM) == 2


def test_the_dedup_key_lives_for_the_window(redis_url: str, r: redis.Redis) -> None:
    settings = Settings(redis_url=redis_url, event_dedup_window_s=120)
    with Client(settings=settings) as client:
        client.emit("x.y", {}, source="/s", id="e1")
    (key,) = list(r.scan_iter("orch:dedup:*"))
    assert 110 <= r.ttl(key) <= 120


def test_emit_many_publishes_large_batches_in_order(settings: Settings, r: redis.Redis) -> None:
    items = [{"type": "bench.item", "data": {"n": i}} for i in range(2500)]
    with Client(settings=settings) as client:
        ids = client.emit_many(items)

    assert len(ids) == len(set(ids)) == 2500
    entries = r.xrange(STREAM)
    assert [loads(fields[b"e"])["data"]["n"] for _, fields in entries] == list(range(2500))
    assert [loads(fields[b"e"])["id"] for _, fields in entries] == ids


def test_more_than_20_chunks_take_two_round_trips_and_come_back_in_order(settings: Settings,
                                                                         r: redis.Redis) -> None:
    repeated, last = Event.new("bench.item", source="/bench", id="r"), Event.new("bench.last", source="/bench")
    with Client(settings=settings) as client:
        published = client.publish([repeated] * 10_000 + [last])  # 21 chunks: the last one alone in a pipeline

    assert [p.duplicate for p in published] == [False] + [True] * 9_999 + [False]
    assert {p.entry_id for p in published[:-1]} == {published[0].entry_id}
    assert [loads(fields[b"e"])["id"] for _, fields in r.xrange(STREAM)] == ["r", last.id]


def test_a_batch_with_one_invalid_event_publishes_nothing(settings: Settings, r: redis.Redis) -> None:
    with Client(settings=settings) as client, pytest.raises(EventError, match=r"events\[1\]"):
        client.emit_many([{"type": "ok", "data": 1}, {"type": "", "data": 2}])
    assert r.xlen(STREAM) == 0


def test_an_event_over_the_size_limit_is_refused(redis_url: str, r: redis.Redis) -> None:
    settings = Settings(redis_url=redis_url, event_max_bytes=1000)
    with Client(settings=settings) as client, pytest.raises(EventTooLargeError, match="over the limit of 1000"):
        client.emit("big", {"blob": "x" * 2000})
    assert r.xlen(STREAM) == 0


def test_accepted_and_duplicate_events_are_counted(settings: Settings, r: redis.Redis) -> None:
    with Client(settings=settings) as client:
        client.emit_many([{"type": "t", "id": "1"}, {"type": "t", "id": "2"}, {"type": "t", "id": "1"}])
    counts = r.hgetall("orch:metrics:orch_events_received_total")
    assert counts == {b"custom\x1faccepted": b"2", b"custom\x1fduplicate": b"1"}


def test_module_level_emit_reads_the_environment(redis_url: str, r: redis.Redis,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_REDIS_URL", redis_url)
    monkeypatch.setattr(client_module, "_default", None)
    event_id = emit("order.created", {"order_id": "A-2"}, source="/shop", subject="A-2")
    stored = loads(r.xrange(STREAM)[0][1][b"e"])
    assert stored["id"] == event_id and stored["subject"] == "A-2" and stored["source"] == "/shop"
    client_module._default.close()  # type: ignore[union-attr]
