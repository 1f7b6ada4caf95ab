"""① AsyncClient on a real Redis: the same events, validation, dedup and causation as Client, awaited."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio

from orchestrator import AsyncClient, Client, Event, EventError
from orchestrator.errors import EventTooLargeError, RedisUnavailableError
from orchestrator.events.causation import caused_by
from orchestrator.jsonutil import loads
from orchestrator.settings import Settings

from ..helpers import RedisServer, free_port

STREAM = "orch:events"


def _stored(r: redis.Redis) -> list[dict[str, Any]]:
    return [loads(fields[b"e"]) for _, fields in r.xrange(STREAM)]


def test_emit_with_asyncio_run(settings: Settings, r: redis.Redis) -> None:
    async def main() -> str:
        async with AsyncClient(settings=settings, source="/shop") as client:
            return await client.emit("order.created", {"order_id": "A-1"}, subject="A-1")

    event_id = asyncio.run(main())

    (stored,) = _stored(r)
    assert stored["id"] == event_id and stored["source"] == "/shop" and stored["subject"] == "A-1"
    assert stored["data"] == {"order_id": "A-1"} and stored["time"].endswith("Z")
    assert r.hgetall("orch:metrics:orch_events_received_total") == {b"custom\x1faccepted": b"1"}


def test_the_url_and_the_environment_are_resolved_like_client(redis_url: str, r: redis.Redis,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with AsyncClient(redis_url) as by_url:
            await by_url.emit("a", id="1")
        monkeypatch.setenv("ORCH_REDIS_URL", redis_url)
        async with AsyncClient() as from_env:
            await from_env.emit("b", id="2")

    asyncio.run(main())
    assert [(e["type"], e["source"]) for e in _stored(r)] == [("a", "/orch/client"), ("b", "/orch/client")]


def test_emit_many_pipelines_large_batches_in_order(settings: Settings, r: redis.Redis) -> None:
    round_trips = 0

    async def main() -> list[str]:
        nonlocal round_trips
        connection = redis.asyncio.Redis.from_url(settings.redis_url or "")
        make_pipeline = connection.pipeline

        def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
            nonlocal round_trips
            round_trips += 1
            return make_pipeline(*args, **kwargs)

        connection.pipeline = counting_pipeline  # type: ignore[method-assign]
        try:
            client = AsyncClient(settings=settings, connection=connection)
            return await client.emit_many({"type": "bench.item", "data": {"n": i}} for i in range(2000))
        finally:
            await connection.aclose()

    ids = asyncio.run(main())

    assert len(ids) == len(set(ids)) == 2000
    stored = _stored(r)
    assert [e["data"]["n"] for e in stored] == list(range(2000))
    assert [e["id"] for e in stored] == ids
    assert round_trips == 1, "4 chunks of 500 go in one pipelined round trip"


def test_a_repeated_source_and_id_is_published_once(settings: Settings, r: redis.Redis) -> None:
    async def main() -> list[Any]:
        async with AsyncClient(settings=settings, source="/shop") as client:
            first = await client.emit("order.created", {"v": 1}, id="o-1")
            again = await client.publish([{"type": "order.created", "data": {"v": 2}, "id": "o-1"},
                                          Event.new("order.created", {"v": 3}, source="/shop", id="o-1"),
                                          {"type": "order.created", "id": "o-1", "source": "/other"}])
            return [first, again]

    first, again = asyncio.run(main())

    assert [p.duplicate for p in again] == [True, True, False]
    assert again[0].event_id == again[1].event_id == first
    assert [(e["source"], e.get("data")) for e in _stored(r)] == [("/shop", {"v": 1}), ("/other", None)]
    with Client(settings=settings, source="/shop") as sync:
        assert sync.publish([{"type": "order.created", "id": "o-1"}])[0].duplicate, "one dedup for both clients"


def test_invalid_events_name_the_field_and_publish_nothing(redis_url: str, r: redis.Redis) -> None:
    async def main() -> None:
        async with AsyncClient(settings=Settings(redis_url=redis_url, event_max_bytes=1000)) as client:
            with pytest.raises(EventError, match=r"attribute 'subject'") as bad_subject:
                await client.emit("order.created", subject="")
            assert bad_subject.value.field == "subject"
            with pytest.raises(EventError, match=r"events\[1\]\.type") as bad_type:
                await client.emit_many([{"type": "ok"}, {"type": ""}])
            assert bad_type.value.field == "type"
            with pytest.raises(EventError, match="'Bad' is not a valid attribute name"):
                await client.emit("x", extensions={"Bad": "1"})
            with pytest.raises(EventTooLargeError, match="over the limit of 1000"):
                await client.emit("big", {"blob": "x" * 2000})

    asyncio.run(main())
    assert r.xlen(STREAM) == 0


def test_events_emitted_inside_a_cause_carry_it(settings: Settings, r: redis.Redis) -> None:
    async def main() -> None:
        async with AsyncClient(settings=settings) as client:
            await client.emit("outside")
            with caused_by("run-9", "announce"):
                await client.emit("inside")
                await client.emit("explicit", extensions={"orchrun": "other-run"})
                await client.emit_many([{"type": "batched"}])

    asyncio.run(main())
    with caused_by("run-9", "sync"), Client(settings=settings) as sync:
        sync.emit("from.sync")

    attributes = [{k: e.get(k) for k in ("type", "orchrun", "orchtask") if k in e} for e in _stored(r)]
    assert attributes == [
        {"type": "outside"},
        {"type": "inside", "orchrun": "run-9", "orchtask": "announce"},
        {"type": "explicit", "orchrun": "other-run"},
        {"type": "batched", "orchrun": "run-9", "orchtask": "announce"},
        {"type": "from.sync", "orchrun": "run-9", "orchtask": "sync"},
    ]


def test_an_unreachable_redis_is_a_clear_error() -> None:
    async def main() -> None:
        async with AsyncClient(f"redis://127.0.0.1:{free_port()}/0") as client:
            await client.emit("x")

    with pytest.raises(RedisUnavailableError, match="cannot reach Redis at redis://127.0.0.1:.* Is it running"):
        asyncio.run(main())


def test_both_clients_warn_alike_about_a_server_that_may_evict(caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer("--maxmemory-policy", "allkeys-lru")
    try:
        async def main() -> None:
            async with AsyncClient(server.url) as client:
                await client.emit("x")

        asyncio.run(main())
        async_warnings = [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]
        caplog.clear()
        with Client(server.url) as sync:
            sync.emit("y")
        sync_warnings = [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    finally:
        server.stop()

    assert len(async_warnings) == 1 and "maxmemory-policy is allkeys-lru" in async_warnings[0]
    assert async_warnings == sync_warnings


def test_a_reserved_source_is_refused_and_nothing_published(settings: Settings, r: redis.Redis) -> None:
    async def main() -> None:
        async with AsyncClient(settings=settings) as client:
            with pytest.raises(EventError, match=r"source '/schedules/nightly-digest': .*reserved") as caught:
                await client.emit("schedule.fired", source="/schedules/nightly-digest")
            assert caught.value.field == "source"
            with pytest.raises(EventError, match=r"events\[1\]\.source"):
                await client.emit_many([{"type": "ok"}, {"type": "file.added", "source": "/watches/inbox"}])

    asyncio.run(main())
    assert r.xlen(STREAM) == 0
