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
from orchestrator.events.coalesce import Coalescer
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


def test_a_caller_that_leaves_does_not_cancel_the_others(settings: Settings, r: redis.Redis) -> None:
    async def body(coalescer: Coalescer) -> Any:
        leaving = asyncio.ensure_future(coalescer.publish(_event(0)))
        staying = asyncio.ensure_future(coalescer.publish(_event(1)))
        await asyncio.sleep(0)
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        return await staying

    outcome = _run(settings.redis_url or "", body)

    assert outcome.event_id == "d-1"
    assert sorted(loads(fields[b"e"])["id"] for _, fields in r.xrange(STREAM)) == ["d-0", "d-1"], \
        "the event of the caller that left was in flight: it is published all the same"
