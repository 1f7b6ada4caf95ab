"""① Custom events from applications: `Client` (blocking), `AsyncClient` (asyncio) and `emit()`.

    from orchestrator import AsyncClient, Client, emit

    emit("order.created", {"order_id": "A-1"}, source="/shop")        # uses ORCH_REDIS_URL
    with Client("redis://localhost:6379/0", source="/shop") as client:
        client.emit_many([{"type": "order.created", "data": {"order_id": f"A-{i}"}} for i in range(1000)])
    async with AsyncClient(source="/shop") as client:
        await client.emit("order.created", {"order_id": "A-2"})

`emit` returns once the event is durably in the stream (or was already accepted with the same
source and id within the dedup window, in which case it is not published again). Both clients build
events the same way (`_EventFactory`): defaults for `id`, `time` and `source`, the same validation,
and the causation attributes (`orchrun`, `orchtask`) when emitting from inside a task, or from a
command a shell task runs (causation.py `with_cause`). Sources under
`/schedules/`, `/hooks/` and `/watches/` are refused (EventError): they belong to orch's own triggers.

Everything but I/O is written once, in `_ClientCore` (settings, publisher options, building events)
and in the cores under it (`publish.Planner`, `connection.server_check`). `Client` and `AsyncClient`
are shells: their `emit`, `emit_many` and `publish` hand the core's events to one I/O method,
`_publish`, and differ only in awaiting it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypedDict

import redis
import redis.asyncio

from ..connection import async_client_from_url, check_server_async, client_options, connect, resolve_redis_url
from ..errors import EventError
from ..settings import Settings
from ..state.keys import Keys
from .causation import Cause, environment_cause, with_cause
from .envelope import Event, event_from_mapping, new_event_id
from .publish import AsyncPublisher, Published, Publisher
from .sources import check_custom_source

__all__ = ["DEFAULT_SOURCE", "AsyncClient", "Client", "emit"]

DEFAULT_SOURCE = "/orch/client"

EventLike = Event | Mapping[str, Any]


class _EventFactory:
    """Turns what `emit` / `emit_many` are given into validated Events; shared by both clients."""

    source: str

    def _event(self, type: str, data: Any, *, source: str | None, subject: str | None, id: str | None,
               time: datetime | None, datacontenttype: str | None,
               extensions: Mapping[str, str | int | bool] | None) -> Event:
        merged = dict(extensions or {})
        merged.update(with_cause(merged))
        event = Event.new(type, data, source=source or self.source, subject=subject, id=id, time=time,
                          datacontenttype=datacontenttype, extensions=merged)
        check_custom_source(event.source)
        return event

    def _events(self, items: Iterable[EventLike]) -> list[Event]:
        cause = environment_cause()  # once per batch (the current cause, `caused_by`, is read per event)
        now = datetime.now(UTC)  # the events of one call that name no time share it
        events = [self._complete(item, i, cause, now) for i, item in enumerate(items)]
        checked: set[str] = set()
        for index, event in enumerate(events):
            if event.source not in checked:  # a batch has few sources: each is checked once
                check_custom_source(event.source, f"events[{index}]" if len(events) > 1 else "")
                checked.add(event.source)
        return events

    def _complete(self, item: EventLike, index: int, from_env: Cause | None, now: datetime) -> Event:
        if isinstance(item, Event):
            cause = with_cause(item.extensions, from_env=from_env)
            return item.model_copy(update={"extensions": {**item.extensions, **cause}}) if cause else item
        if not isinstance(item, (dict, Mapping)):  # dict first: a plain type check, before the ABC's
            raise EventError(f"events[{index}]: expected an Event or a mapping, got {type(item).__name__}")
        values = {"source": self.source, "time": now, **item}
        if "id" not in values:
            values["id"] = new_event_id()
        cause = with_cause(values, from_env=from_env)
        nested = values.get("extensions")
        if cause and (nested is None or isinstance(nested, Mapping)):
            values["extensions"] = {**(nested or {}), **cause}
        return event_from_mapping(values, where=f"events[{index}]")


class _PublisherOptions(TypedDict):
    keys: Keys
    dedup_window_s: float
    max_bytes: int


class _ClientCore(_EventFactory):
    """What both clients hold and decide without I/O: their settings, default source and publisher."""

    def __init__(self, redis_url: str | None, settings: Settings | None, *, source: str,
                 owns_connection: bool) -> None:
        self.settings = settings or (Settings(redis_url=redis_url) if redis_url else Settings())
        self.source = source
        self._owns_connection = owns_connection

    def _publisher_options(self) -> _PublisherOptions:
        return {"keys": Keys(self.settings.key_prefix), "dedup_window_s": self.settings.event_dedup_window_s,
                "max_bytes": self.settings.event_max_bytes}


class Client(_ClientCore):
    """Publishes events to orch from any Python application. Thread-safe; reuse one per process."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        settings: Settings | None = None,
        connection: redis.Redis | None = None,
        source: str = DEFAULT_SOURCE,
    ) -> None:
        super().__init__(redis_url, settings, source=source, owns_connection=connection is None)
        self._redis = connection if connection is not None else connect(self.settings)
        self._publisher = Publisher(self._redis, **self._publisher_options())

    def emit(
        self,
        type: str,
        data: Any = None,
        *,
        source: str | None = None,
        subject: str | None = None,
        id: str | None = None,
        time: datetime | None = None,
        datacontenttype: str | None = None,
        extensions: Mapping[str, str | int | bool] | None = None,
    ) -> str:
        """Publish one event and return its id. Raises EventError if it is invalid."""
        event = self._event(type, data, source=source, subject=subject, id=id, time=time,
                            datacontenttype=datacontenttype, extensions=extensions)
        return self._publish([event])[0].event_id

    def emit_many(self, events: Iterable[EventLike]) -> list[str]:
        """Publish many events in pipelined batches and return their ids, in order.

        Each item is an Event or a mapping of CloudEvent attributes; `id`, `time` and `source` get
        defaults when missing. Nothing is published if any item is invalid.
        """
        return [p.event_id for p in self.publish(events)]

    def publish(self, events: Iterable[EventLike]) -> list[Published]:
        """Like `emit_many`, with the stream entry id and whether each event was a duplicate."""
        return self._publish(self._events(events))

    def _publish(self, events: list[Event]) -> list[Published]:
        return self._publisher.publish(events)

    def close(self) -> None:
        """Release the connection pool if this client created it."""
        if self._owns_connection:
            self._redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncClient(_ClientCore):
    """`Client` for asyncio applications: the same events, validation and dedup, awaited.

    Use one per event loop (its connections belong to the loop that first used them); close it with
    `await client.aclose()` or `async with`. The server is checked (Redis >= 6.2) on first use.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        settings: Settings | None = None,
        connection: redis.asyncio.Redis | None = None,
        source: str = DEFAULT_SOURCE,
    ) -> None:
        super().__init__(redis_url, settings, source=source, owns_connection=connection is None)
        self._url = resolve_redis_url(self.settings) if connection is None else ""
        self._redis = connection if connection is not None else async_client_from_url(
            self._url, **client_options(self.settings))
        self._checked = connection is not None
        self._publisher = AsyncPublisher(self._redis, **self._publisher_options())

    async def emit(
        self,
        type: str,
        data: Any = None,
        *,
        source: str | None = None,
        subject: str | None = None,
        id: str | None = None,
        time: datetime | None = None,
        datacontenttype: str | None = None,
        extensions: Mapping[str, str | int | bool] | None = None,
    ) -> str:
        """Publish one event and return its id. Raises EventError if it is invalid."""
        event = self._event(type, data, source=source, subject=subject, id=id, time=time,
                            datacontenttype=datacontenttype, extensions=extensions)
        return (await self._publish([event]))[0].event_id

    async def emit_many(self, events: Iterable[EventLike]) -> list[str]:
        """Publish many events in pipelined batches and return their ids, in order (see `Client.emit_many`)."""
        return [p.event_id for p in await self.publish(events)]

    async def publish(self, events: Iterable[EventLike]) -> list[Published]:
        """Like `emit_many`, with the stream entry id and whether each event was a duplicate."""
        return await self._publish(self._events(events))

    async def _publish(self, events: list[Event]) -> list[Published]:
        if not self._checked:
            await check_server_async(self._redis, self._url)
            self._checked = True
        return await self._publisher.publish(events)

    async def aclose(self) -> None:
        """Release the connection pool if this client created it."""
        if self._owns_connection:
            await self._redis.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


_default: Client | None = None
_default_lock = threading.Lock()


def emit(type: str, data: Any = None, **attributes: Any) -> str:
    """Publish one event with a process-wide Client built from the `ORCH_*` environment on first use.

    Takes the same keyword attributes as `Client.emit` (source, subject, id, time, datacontenttype,
    extensions) and returns the event id.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        client = _default
    return client.emit(type, data, **attributes)
