"""② Group commit for one-event requests: events that concurrent requests publish go to Redis together.

A webhook request publishes one event. Under load, each request's own script call (a round trip, and
redis-py's per-command work on both ends) was the largest single cost of `orch api` after the HTTP
stack. `Coalescer.publish` keeps at most one call in flight per publisher: the first event goes at once
(no added latency when idle), and the events that arrive while it is out go together in the next call
(up to CHUNK). Each caller still gets its own outcome, or its own error:

    too large        raised in planning, before anything is sent: the events of that group are then
                     published one by one, so only the oversized one fails
    Redis error      every event of the failed call gets it (none of them is in the stream, or, on a
                     lost reply, some may be: a retried delivery is deduplicated, as for one event)
    caller gone      its event is still published (it may already be in flight): a cancelled wait
                     never cancels the call the others depend on
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..errors import EventTooLargeError
from .publish import CHUNK, Published

if TYPE_CHECKING:
    from .envelope import Event
    from .publish import AsyncPublisher

__all__ = ["Coalescer"]

_Waiting = tuple["Event", "asyncio.Future[Published]"]


class Coalescer:
    """Publishes single events through `publisher`, one script call in flight at a time."""

    def __init__(self, publisher: AsyncPublisher) -> None:
        self._publisher = publisher
        self._waiting: list[_Waiting] = []
        self._sender: asyncio.Task[None] | None = None

    async def publish(self, event: Event) -> Published:
        """Publish `event` (deduplicated) with whatever else is waiting; its outcome once it is in the stream."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Published] = loop.create_future()
        future.add_done_callback(_retrieved)  # a caller that left never reads its error: no warning for it
        self._waiting.append((event, future))
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._drain())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[:CHUNK], self._waiting[CHUNK:]
            await self._send(group)

    async def _send(self, group: list[_Waiting]) -> None:
        try:
            try:
                outcomes = await self._publisher.publish([event for event, _ in group])
            except EventTooLargeError:  # planned before sending: nothing went out
                if len(group) == 1:
                    raise
                for one in group:
                    await self._send([one])
                return
        except Exception as exc:  # noqa: BLE001 - handed to each caller, who answers for it
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # the sender itself is cancelled (the server stops): so are its callers
            for _, future in group:
                future.cancel()
            raise
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)


def _retrieved(future: asyncio.Future[Published]) -> None:
    if not future.cancelled():
        future.exception()
