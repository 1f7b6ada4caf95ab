"""② Publishing events: dedup on (source, id) and XADD in one Lua script, in batches.

`Publisher` (blocking redis-py) and `AsyncPublisher` (redis.asyncio) share the preparation and the
reply parsing; only the call differs. An event counts as accepted once the script returned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from ..errors import EventTooLargeError
from ..jsonutil import dumps
from ..metrics import EVENTS_RECEIVED
from ..state import lua
from ..state.keys import Keys
from .envelope import Event

__all__ = ["CHUNK", "PIPELINE", "AsyncPublisher", "Published", "Publisher", "dedup_digest", "encode_events"]

CHUNK = 500  # events per script call: bounds how long one call holds Redis (~1 ms)
PIPELINE = 20  # script calls per round trip when publishing more than one chunk


@dataclass(frozen=True)
class Published:
    """The outcome of publishing one event."""

    event_id: str
    entry_id: str
    duplicate: bool


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


class _Base:
    def __init__(self, keys: Keys, *, dedup_window_s: float, max_bytes: int, trigger: str) -> None:
        self._keys = keys
        self._window = str(max(1, int(dedup_window_s)))
        self._max_bytes = max_bytes
        self._trigger = trigger

    def _calls(self, events: Sequence[Event]) -> list[tuple[list[str], list[Any]]]:
        payloads = encode_events(events, self._max_bytes)
        calls = []
        for start in range(0, len(events), CHUNK):
            chunk = events[start:start + CHUNK]
            keys = [self._keys.events, self._keys.metric(EVENTS_RECEIVED.name)]
            keys += [self._keys.dedup(dedup_digest(e.source, e.id)) for e in chunk]
            calls.append((keys, [self._window, self._trigger, *payloads[start:start + CHUNK]]))
        return calls

    @staticmethod
    def _parse(events: Sequence[Event], replies: list[list[bytes]]) -> list[Published]:
        flat = [item for reply in replies for item in reply]
        out = []
        for event, raw in zip(events, flat, strict=True):
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            duplicate = text.startswith("=")
            out.append(Published(event.id, text[1:] if duplicate else text, duplicate))
        return out


class Publisher(_Base):
    """Publishes events with a blocking Redis client."""

    def __init__(self, client: redis.Redis, keys: Keys, *, dedup_window_s: float, max_bytes: int,
                 trigger: str = "custom") -> None:
        super().__init__(keys, dedup_window_s=dedup_window_s, max_bytes=max_bytes, trigger=trigger)
        self._redis = client
        self._script = lua.register(client, "publish")

    def publish(self, events: Sequence[Event]) -> list[Published]:
        """Append `events` (deduplicated) to the stream; one round trip per 20 chunks of 500."""
        if not events:
            return []
        calls = self._calls(events)
        if len(calls) == 1:
            keys, args = calls[0]
            return self._parse(events, [self._script(keys=keys, args=args)])
        replies: list[list[bytes]] = []
        for start in range(0, len(calls), PIPELINE):
            pipe = self._redis.pipeline(transaction=False)
            for keys, args in calls[start:start + PIPELINE]:
                self._script(keys=keys, args=args, client=pipe)
            replies.extend(pipe.execute())
        return self._parse(events, replies)


class AsyncPublisher(_Base):
    """Publishes events with an asyncio Redis client (the HTTP API's and AsyncClient's path)."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, *, dedup_window_s: float, max_bytes: int,
                 trigger: str = "custom") -> None:
        super().__init__(keys, dedup_window_s=dedup_window_s, max_bytes=max_bytes, trigger=trigger)
        self._redis = client
        self._script = lua.register(client, "publish")

    async def publish(self, events: Sequence[Event]) -> list[Published]:
        """Append `events` (deduplicated) to the stream; one round trip per 20 chunks of 500."""
        if not events:
            return []
        calls = self._calls(events)
        if len(calls) == 1:
            keys, args = calls[0]
            return self._parse(events, [await self._script(keys=keys, args=args)])
        replies: list[list[bytes]] = []
        for start in range(0, len(calls), PIPELINE):
            pipe = self._redis.pipeline(transaction=False)
            for keys, args in calls[start:start + PIPELINE]:
                await self._script(keys=keys, args=args, client=pipe)  # queued: nothing is sent yet
            replies.extend(await pipe.execute())
        return self._parse(events, replies)
