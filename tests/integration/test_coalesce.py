"""② Group commit of one-event requests (events/coalesce.py): concurrent events go out together, and each
caller still gets its own outcome or its own error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio

from orchestrator import Event
from orchestrator.errors import EventTooLargeError
from orchestrator.events.coalesce import GROUP_BYTES, Coalescer
from orchestrator.events.publish import AsyncPublisher
from orchestrator.jsonutil import loads
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys

from ..helpers import free_port

STREAM = "orch:events"


def _event(n: int, *, id: str | None = None, size: int = 0) -> Event:
    return Event.new("hook.push", {"n": n, "pad": "x" * size}, source="/hooks/test", id=id or f"d-{n}")


def _run(url: str, body: Any, max_bytes: int = 64 * 1024) -> Any:
    async def main() -> Any:
        client = redis.asyncio.Redis.from_url(url)
        try:
            coalescer = Coalescer(AsyncPublisher(client, Keys("orch"), dedup_window_s=60, max_bytes=max_bytes,
                                                 trigger="webhook"))
            return await body(coalescer)
        finally:
            await client.aclose()

    return asyncio.run(main())


def _script_calls(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


def test_concurrent_events_share_script_calls_and_each_gets_its_outcome(settings: Settings, r: redis.Redis) -> None:
    r.config_resetstat()

    async def body(coalescer: Coalescer) -> list[Any]:
        return list(await asyncio.gather(*(coalescer.publish(_event(n)) for n in range(200))))

    outcomes = _run(settings.redis_url or "", body)

    assert [o.event_id for o in outcomes] == [f"d-{n}" for n in range(200)]
    assert not any(o.duplicate for o in outcomes)
    stored = {loads(fields[b"e"])["id"]: entry.decode() for entry, fields in r.xrange(STREAM)}
    assert stored == {o.event_id: o.entry_id for o in outcomes}, "each caller gets the entry of its own event"
    assert _script_calls(r) < 20, "200 concurrent events go out in a few calls, not one each"


def test_a_repeat_in_the_same_group_is_a_duplicate(settings: Settings, r: redis.Redis) -> None:
    async def body(coalescer: Coalescer) -> list[Any]:
        return list(await asyncio.gather(*(coalescer.publish(_event(n, id="same")) for n in range(5))))

    outcomes = _run(settings.redis_url or "", body)

    assert [o.duplicate for o in outcomes] == [False, True, True, True, True]
    assert len({o.entry_id for o in outcomes}) == 1 and r.xlen(STREAM) == 1


def test_only_the_oversized_event_fails(settings: Settings, r: redis.Redis) -> None:
    async def body(coalescer: Coalescer) -> list[Any]:
        events = [_event(0), _event(1, size=5000), _event(2)]
        return list(await asyncio.gather(*(coalescer.publish(e) for e in events), return_exceptions=True))

    first, oversized, last = _run(settings.redis_url or "", body, max_bytes=2000)

    assert isinstance(oversized, EventTooLargeError)
    assert (first.event_id, last.event_id) == ("d-0", "d-2")
    assert sorted(loads(fields[b"e"])["id"] for _, fields in r.xrange(STREAM)) == ["d-0", "d-2"]


def test_a_redis_error_reaches_every_caller_of_the_call() -> None:
    async def body(coalescer: Coalescer) -> list[Any]:
        return list(await asyncio.gather(*(coalescer.publish(_event(n)) for n in range(3)), return_exceptions=True))

    errors = _run(f"redis://127.0.0.1:{free_port()}/0", body)

    assert all(isinstance(e, redis.ConnectionError) for e in errors)


def test_a_caller_that_leaves_does_not_cancel_the_call_in_flight(settings: Settings, r: redis.Redis) -> None:
    async def body(coalescer: Coalescer) -> Any:
        r.client_pause(5000, all=False)  # writes wait: the call below stays in flight
        try:
            leaving = asyncio.ensure_future(coalescer.publish(_event(0)))
            staying = asyncio.ensure_future(coalescer.publish(_event(1)))
            await _in_flight(r)
            leaving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leaving
        finally:
            r.client_unpause()
        return await staying

    outcome = _run(settings.redis_url or "", body)

    assert outcome.event_id == "d-1"
    assert sorted(loads(fields[b"e"])["id"] for _, fields in r.xrange(STREAM)) == ["d-0", "d-1"], \
        "the event of the caller that left was in flight: it is published all the same"


def test_when_the_server_stops_every_waiting_caller_is_told_to_send_again(settings: Settings,
                                                                          r: redis.Redis) -> None:
    async def body(coalescer: Coalescer) -> list[Any]:
        r.client_pause(5000, all=False)
        try:
            first = asyncio.ensure_future(coalescer.publish(_event(0)))
            await _in_flight(r)
            queued = [asyncio.ensure_future(coalescer.publish(_event(n))) for n in (1, 2)]
            await asyncio.sleep(0)
            assert coalescer._sender is not None
            coalescer._sender.cancel()  # what the event loop does to its tasks when `orch api` stops
            return list(await asyncio.gather(first, *queued, return_exceptions=True))
        finally:
            r.client_unpause()

    answers = _run(settings.redis_url or "", body)

    assert all(isinstance(a, redis.ConnectionError) and "send it again" in str(a) for a in answers), answers


def test_a_call_carries_at_most_group_bytes_of_requests(settings: Settings, r: redis.Redis) -> None:
    r.config_resetstat()
    third = GROUP_BYTES // 3

    async def body(coalescer: Coalescer) -> list[Any]:
        return list(await asyncio.gather(*(coalescer.publish(_event(n), third) for n in range(10))))

    outcomes = _run(settings.redis_url or "", body)

    assert len(outcomes) == 10 and r.xlen(STREAM) == 10
    assert _script_calls(r) == 4, "three requests of a third of GROUP_BYTES per call: 3 + 3 + 3 + 1"


async def _in_flight(r: redis.Redis) -> None:
    """Until Redis holds a client blocked by the pause (the coalescer's call)."""
    for _ in range(500):
        if int(r.info("clients").get("blocked_clients", 0)) or int(r.info("clients").get("paused_clients", 0) or 0):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the coalescer's call never reached Redis")
