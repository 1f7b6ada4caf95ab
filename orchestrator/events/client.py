"""① Custom events from applications: `Client.emit` / `emit_many`, and the module-level `emit()`.

    from orchestrator import Client, emit

    emit("order.created", {"order_id": "A-1"}, source="/shop")        # uses ORCH_REDIS_URL
    with Client("redis://localhost:6379/0", source="/shop") as client:
        client.emit_many([{"type": "order.created", "data": {"order_id": f"A-{i}"}} for i in range(1000)])

`emit` returns once the event is durably in the stream (or was already accepted with the same
source and id within the dedup window, in which case it is not published again).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import redis

from ..connection import connect
from ..errors import EventError
from ..settings import Settings
from ..state.keys import Keys
from .envelope import Event, event_from_mapping, new_event_id
from .publish import Published, Publisher

__all__ = ["DEFAULT_SOURCE", "Client", "emit"]

DEFAULT_SOURCE = "/orch/client"


class Client:
    """Publishes events to orch from any Python application. Thread-safe; reuse one per process."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        settings: Settings | None = None,
        connection: redis.Redis | None = None,
        source: str = DEFAULT_SOURCE,
    ) -> None:
        self.settings = settings or (Settings(redis_url=redis_url) if redis_url else Settings())
        self._owns_connection = connection is None
        self._redis = connection if connection is not None else connect(self.settings)
        self.source = source
        self._publisher = Publisher(
            self._redis,
            Keys(self.settings.key_prefix),
            dedup_window_s=self.settings.event_dedup_window_s,
            max_bytes=self.settings.event_max_bytes,
        )

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
        event = Event.new(type, data, source=source or self.source, subject=subject, id=id, time=time,
                          datacontenttype=datacontenttype, extensions=extensions)
        return self._publisher.publish([event])[0].event_id

    def emit_many(self, events: Iterable[Event | Mapping[str, Any]]) -> list[str]:
        """Publish many events in pipelined batches and return their ids, in order.

        Each item is an Event or a mapping of CloudEvent attributes; `id`, `time` and `source` get
        defaults when missing. Nothing is published if any item is invalid.
        """
        return [p.event_id for p in self.publish(events)]

    def publish(self, events: Iterable[Event | Mapping[str, Any]]) -> list[Published]:
        """Like `emit_many`, with the stream entry id and whether each event was a duplicate."""
        return self._publisher.publish([self._complete(item, i) for i, item in enumerate(events)])

    def _complete(self, item: Event | Mapping[str, Any], index: int) -> Event:
        if isinstance(item, Event):
            return item
        if not isinstance(item, Mapping):
            raise EventError(f"events[{index}]: expected an Event or a mapping, got {type(item).__name__}")
        values = dict(item)
        values.setdefault("id", new_event_id())
        values.setdefault("source", self.source)
        values.setdefault("time", datetime.now(UTC))
        return event_from_mapping(values, where=f"events[{index}]")

    def close(self) -> None:
        """Release the connection pool if this client created it."""
        if self._owns_connection:
            self._redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


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
