"""② Publishing events: dedup on (source, id) and XADD in one Lua script, in batches.

A sans-I/O core under two thin shells, the way h11 sits under httpx:

    Planner.plan(events) -> Plan    pure: encode the events, one script call per CHUNK of them, the calls
                                    grouped into round trips (a lone call goes direct, more go pipelined,
                                    PIPELINE calls per round trip)
    Plan.outcome(replies)           pure: the script's replies, in order, read as one Published per event
    Publisher, AsyncPublisher       I/O only: send each round trip with redis-py or redis.asyncio

Everything that can fail without Redis (an event over the size limit) fails in `plan`, before anything
is sent. An event counts as accepted once the script returned. With traces exported, each event is
published in an `ingest` span whose context it carries (orchestrator/tracing.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis
import redis.asyncio

from .. import tracing
from ..errors import EventTooLargeError
from ..jsonutil import dumps
from ..metrics import EVENTS_RECEIVED
from ..state import lua
from ..state.keys import Keys
from .envelope import Event

__all__ = [
    "CHUNK",
    "PIPELINE",
    "AsyncPublisher",
    "Plan",
    "Planner",
    "Published",
    "Publisher",
    "RoundTrip",
    "dedup_digest",
    "encode_events",
]

CHUNK = 500  # events per script call: bounds how long one call holds Redis (~4 ms); publish.lua unpacks
# its keys for one MGET, which Redis' Lua allows up to about 8,000
PIPELINE = 20  # script calls per round trip when publishing more than one chunk

Call = tuple[list[str], list[Any]]  # one call of publish.lua: its KEYS and ARGV
Reply = list[Any]  # what one call returns: an entry id per event, "=" before it for a duplicate


class Published(NamedTuple):
    """The outcome of publishing one event (a tuple: one is made per event, at ingest's rate)."""

    event_id: str
    entry_id: str
    duplicate: bool


@dataclass(frozen=True)
class RoundTrip:
    """Script calls sent together: one direct call, or (`pipelined`) up to PIPELINE in one pipeline."""

    calls: list[Call]
    pipelined: bool


@dataclass(frozen=True)
class Plan:
    """What publishing `events` sends, round trip by round trip, and how to read what comes back."""

    events: Sequence[Event]
    round_trips: list[RoundTrip]

    def outcome(self, replies: Iterable[Reply]) -> list[Published]:
        """One Published per event, from the replies of every call in the plan, in order."""
        flat = [item for reply in replies for item in reply]
        out = []
        for event, raw in zip(self.events, flat, strict=True):
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            duplicate = text.startswith("=")
            out.append(Published(event.id, text[1:] if duplicate else text, duplicate))
        return out


def dedup_digest(source: str, event_id: str) -> str:
    """The fixed-size digest of (source, id) that names an event's dedup key."""
    return hashlib.blake2b(f"{source}\x00{event_id}".encode(), digest_size=16).hexdigest()


def encode_events(events: Sequence[Event], max_bytes: int) -> list[bytes]:
    """Each event as JSON; EventTooLargeError names the first event over `max_bytes`."""
    encoded = []
    for index, event in enumerate(events):
        data = dumps(event.to_dict())
        if len(data) > max_bytes:
            where = f"events[{index}]" if len(events) > 1 else "event"
            raise EventTooLargeError(f"{where} is {len(data)} bytes, over the limit of {max_bytes} bytes",
                                     field=where)
        encoded.append(data)
    return encoded


class Planner:
    """The sans-I/O core of both publishers: turns events into a Plan, for one deployment's keys."""

    def __init__(self, keys: Keys, *, dedup_window_s: float, max_bytes: int, trigger: str) -> None:
        self._keys = keys
        self._window = str(max(1, int(dedup_window_s)))
        self._max_bytes = max_bytes
        self._trigger = trigger

    def plan(self, events: Sequence[Event]) -> Plan:
        """The round trips that publish `events` (none for no events); raises EventTooLargeError."""
        payloads = encode_events(events, self._max_bytes)
        calls = [self._call(events[start:start + CHUNK], payloads[start:start + CHUNK])
                 for start in range(0, len(events), CHUNK)]
        if len(calls) == 1:
            return Plan(events, [RoundTrip(calls, pipelined=False)])
        return Plan(events, [RoundTrip(calls[start:start + PIPELINE], pipelined=True)
                             for start in range(0, len(calls), PIPELINE)])

    def queue_on(self, pipe: Any, events: Sequence[Event]) -> None:
        """Queue the publishing of `events` on `pipe`, a pipeline or a MULTI the caller executes: one EVAL
        per CHUNK events, no round trip of their own (the engine announces runs inside its transaction;
        EVAL, not EVALSHA, as a NOSCRIPT inside MULTI/EXEC would fail alone, after the rest committed)."""
        for trip in self.plan(events).round_trips:
            for keys, args in trip.calls:
                pipe.execute_command("EVAL", lua.source("publish"), len(keys), *keys, *args)

    def _call(self, chunk: Sequence[Event], payloads: list[bytes]) -> Call:
        keys = [self._keys.events, self._keys.metric(EVENTS_RECEIVED.name)]
        keys += [self._keys.dedup(dedup_digest(e.source, e.id)) for e in chunk]
        return keys, [self._window, self._trigger, *payloads]


class Publisher(Planner):
    """Publishes events with a blocking Redis client."""

    def __init__(self, client: redis.Redis, keys: Keys, *, dedup_window_s: float, max_bytes: int,
                 trigger: str = "custom") -> None:
        super().__init__(keys, dedup_window_s=dedup_window_s, max_bytes=max_bytes, trigger=trigger)
        self._redis = client
        self._script = lua.register(client, "publish")

    def publish(self, events: Sequence[Event]) -> list[Published]:
        """Append `events` (deduplicated) to the stream; one round trip per 20 chunks of 500."""
        if not tracing.active:
            return self._publish(events)
        with tracing.ingesting(events, self._trigger) as (stamped, done):
            return done(self._publish(stamped))

    def _publish(self, events: Sequence[Event]) -> list[Published]:
        plan = self.plan(events)
        return plan.outcome([reply for trip in plan.round_trips for reply in self._send(trip)])

    def _send(self, trip: RoundTrip) -> list[Reply]:
        if not trip.pipelined:
            ((keys, args),) = trip.calls
            return [self._script(keys=keys, args=args)]
        pipe = self._redis.pipeline(transaction=False)
        for keys, args in trip.calls:
            self._script(keys=keys, args=args, client=pipe)
        return list(pipe.execute())


class AsyncPublisher(Planner):
    """Publishes events with an asyncio Redis client (the HTTP API's and AsyncClient's path)."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, *, dedup_window_s: float, max_bytes: int,
                 trigger: str = "custom") -> None:
        super().__init__(keys, dedup_window_s=dedup_window_s, max_bytes=max_bytes, trigger=trigger)
        self._redis = client
        self._script = lua.register(client, "publish")

    async def publish(self, events: Sequence[Event]) -> list[Published]:
        """Append `events` (deduplicated) to the stream; one round trip per 20 chunks of 500."""
        if not tracing.active:
            return await self._publish(events)
        with tracing.ingesting(events, self._trigger) as (stamped, done):
            return done(await self._publish(stamped))

    async def _publish(self, events: Sequence[Event]) -> list[Published]:
        plan = self.plan(events)
        return plan.outcome([reply for trip in plan.round_trips for reply in await self._send(trip)])

    async def _send(self, trip: RoundTrip) -> list[Reply]:
        if not trip.pipelined:
            ((keys, args),) = trip.calls
            return [await self._script(keys=keys, args=args)]
        pipe = self._redis.pipeline(transaction=False)
        for keys, args in trip.calls:
            await self._script(keys=keys, args=args, client=pipe)  # queued on the pipeline: nothing is sent yet
        return list(await pipe.execute())
