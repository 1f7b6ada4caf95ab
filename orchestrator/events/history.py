"""② Reading back a window of the recorded events, for `orch rules backtest`: read-only, in pages.

`XRANGE` from one entry id to another, PAGE entries at a time (each page starts after the last entry of the
one before), so a week of events never sits in memory at once and the reader never blocks Redis for long.
It joins no consumer group and writes nothing. Entry ids are Redis's milliseconds, so a window given as
durations counts back from Redis's clock (events/tail.parse_since).

Whether the window reaches further back than the stream does: Redis 7 counts the entries ever added to a
stream (`entries-added`); when that is more than it holds, entries were trimmed (ORCH_EVENTS_RETENTION_S)
or deleted, and when its oldest entry is after the window's start, the events in between are gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import redis

from ..jsonutil import loads
from .stream import compare_ids

__all__ = ["PAGE", "read_window", "trimmed_after"]

PAGE = 500


def read_window(client: redis.Redis, stream: str, start: str, end: str = "+", *, page: int = PAGE,
                progress: Callable[[int, str], None] | None = None) -> Iterator[tuple[str, Any]]:
    """(entry id, decoded event body) of each entry from `start` to `end` (entry ids, both included; `end`
    "+" for the newest), in stream order; a body that is not JSON reads as None. `progress` is called after
    each page with the number of entries read so far and the last entry id."""
    low, read = start, 0
    while True:
        rows = client.xrange(stream, min=low, max=end, count=page)
        for entry, fields in rows:
            yield _text(entry), _body(fields)
        read += len(rows)
        if len(rows) < page:
            return
        low = "(" + _text(rows[-1][0])
        if progress is not None:
            progress(read, _text(rows[-1][0]))


def trimmed_after(client: redis.Redis, stream: str, start: str) -> str | None:
    """Where `stream` starts now (the id of its oldest entry, or past its last when it is empty) when it has
    lost entries and starts after `start`: the events between were trimmed. None when nothing is known to be
    trimmed there (Redis 6.2 does not count the entries added, and reads as nothing trimmed)."""
    try:
        info = client.xinfo_stream(stream)
    except redis.ResponseError:  # no such stream: nothing recorded, nothing trimmed
        return None
    added, length = info.get("entries-added"), info.get("length", 0)
    if added is None or added <= length:
        return None
    first = info.get("first-entry")
    oldest = _text(first[0]) if first else _text(info.get("last-generated-id") or "0-0")
    return oldest if compare_ids(oldest, start) > 0 else None


def _body(fields: dict[bytes, bytes]) -> Any:
    try:
        return loads(fields[b"e"])
    except (KeyError, ValueError):
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
