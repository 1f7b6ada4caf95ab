"""② Group commit for one-event requests: events that concurrent requests publish go to Redis together.

A webhook request publishes one event. Under load, each request's own script call (a round trip, and
redis-py's per-command work on both ends) was the largest single cost of `orch api` after the HTTP
stack. `Coalescer.publish` keeps at most one call in flight per publisher: the first event goes at once
(no added latency when idle), and the events that arrive while it is out go together in the next call,
up to CHUNK events and GROUP_BYTES of request bodies (a call holds Redis while it runs; the first event
of a call goes whatever its size). Each caller still gets its own outcome, or its own error:

    too large        found in planning, before anything is sent: only the oversized event fails, the
                     rest of its group goes in one call (with traces on, sizes are checked before the
                     call, whose spans would otherwise all record the error)
    Redis error      every event of the failed call gets it (none of them is in the stream, or, on a
                     lost reply, some may be: a retried delivery is deduplicated, as for one event)
    caller gone      its event is still published (it may already be in flight): a cancelled wait
                     never cancels the call the others depend on
    server stopping  the sender is cancelled: every caller still waiting gets a ConnectionError (503,
                     send again), as the events in flight may or may not be in the stream
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import TYPE_CHECKING

import redis

from .. import tracing
from ..errors import EventTooLargeError
from .publish import CHUNK, Published

if TYPE_CHECKING:
    from .envelope import Event
    from .publish import AsyncPublisher

__all__ = ["GROUP_BYTES", "Coalescer"]

GROUP_BYTES = 1024 * 1024

_Waiting = tuple["Event", int, "asyncio.Future[Published]"]  # the event, its request's size, its caller's answer
_STOPPING = "orch api is stopping: the event may not be in the stream; send it again"


class Coalescer:
    """Publishes single events through `publisher`, one script call in flight at a time."""

    def __init__(self, publisher: AsyncPublisher) -> None:
        self._publisher = publisher
        self._waiting: list[_Waiting] = []
        self._sender: asyncio.Task[None] | None = None

    async def publish(self, event: Event, size: int = 0) -> Published:
        """Publish `event` (deduplicated) with whatever else is waiting; its outcome once it is in the stream.
        `size`: the bytes of the request that carried it, to bound how much one call carries."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Published] = loop.create_future()
        future.add_done_callback(_retrieved)  # a caller that left never reads its error: no warning for it
        self._waiting.append((event, size, future))
        if self._sender is None or self._sender.done():
            # a context of its own: not that of the request that happened to start it (its trace, say)
            self._sender = loop.create_task(self._drain(), context=contextvars.Context())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        group: list[_Waiting] = []
        try:
            while self._waiting:
                group = self._take()
                await self._send(group)
        except BaseException:  # cancelled: the server stops
            left, self._waiting = [*group, *self._waiting], []
            _fail(left, redis.ConnectionError(_STOPPING))
            raise

    def _take(self) -> list[_Waiting]:
        taken, size = 0, 0
        for _, hint, _ in self._waiting[:CHUNK]:
            if taken and size + hint > GROUP_BYTES:
                break
            taken, size = taken + 1, size + hint
        group, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return group

    async def _send(self, group: list[_Waiting]) -> None:
        if tracing.active and len(group) > 1:
            group = self._fitting(group)
        try:
            outcomes = await self._publisher.publish([event for event, _, _ in group])
        except EventTooLargeError as exc:  # planned before sending: nothing went out
            fitting = self._fitting(group)
            if len(fitting) == len(group):  # not one event alone: nothing to single out
                _fail(group, exc)
            elif fitting:
                await self._send(fitting)
            return
        except Exception as exc:  # noqa: BLE001 - handed to each caller, who answers for it
            _fail(group, exc)
            return
        for (_, _, future), outcome in zip(group, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    def _fitting(self, group: list[_Waiting]) -> list[_Waiting]:
        """The events of `group` under the size limit; the others' callers get their EventTooLargeError."""
        out = []
        for item in group:
            try:
                self._publisher.plan([item[0]])  # sans I/O: encodes it, and raises if it is too large
            except EventTooLargeError as exc:
                _fail([item], exc)
            else:
                out.append(item)
        return out


def _fail(group: list[_Waiting], exc: BaseException) -> None:
    for _, _, future in group:
        if not future.done():
            future.set_exception(exc)


def _retrieved(future: asyncio.Future[Published]) -> None:
    if not future.cancelled():
        future.exception()
