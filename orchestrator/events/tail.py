"""② Following the events stream live, for `orch events tail`.

A plain `XREAD BLOCK` reader: it never joins a consumer group, so it acknowledges nothing and takes
nothing away from the engine, and any number of tails can run beside it. The start is resolved to a
concrete entry id once (`$` becomes the stream's last id), so no event between two reads is missed;
after a lost connection it resumes after the last entry it returned.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from typing import Any

import redis

from ..backoff import Backoff
from .recent import event_record, record_or_none

__all__ = ["SinceError", "event_record", "follow", "parse_since", "start_id"]

_ENTRY_ID = re.compile(r"^(\d+)(?:-(\d+))?$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_READ_COUNT = 100
_MAX_BACKOFF_S = 5.0


class SinceError(ValueError):
    """`--since` is neither a stream entry id nor a duration."""


def parse_since(text: str, now_s: float) -> str:
    """The entry id to read after for `--since TEXT`: an entry id (`1700000000000-0`, `1700000000000`,
    `0` for the whole stream) as given, or a duration back from `now_s` (`30s`, `5m`, `1h30m`, `2d`)."""
    text = text.strip()
    match = _ENTRY_ID.match(text)
    if match:
        return f"{int(match.group(1))}-{int(match.group(2) or 0)}"
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise SinceError(f"--since {text!r}: expected a stream entry id (e.g. 1700000000000-0, or 0 for "
                         "everything) or a duration (e.g. 30s, 5m, 1h30m, 2d)")
    back_ms = sum(float(number) * _UNIT_MS[unit] for number, unit in parts)
    return f"{max(0, int(now_s * 1000 - back_ms))}-0"


def start_id(client: redis.Redis, stream: str, since: str | None, now_s: float | None = None) -> str:
    """The concrete entry id to read after: the stream's last entry for "from now" (None), else `--since`.

    A duration counts back from `now_s`, by default Redis's clock (`TIME`): entry ids are Redis's
    milliseconds, and the host running the tail may be off.
    """
    if since is not None:
        if now_s is None:
            seconds, micros = client.time()
            now_s = int(seconds) + int(micros) / 1e6
        return parse_since(since, now_s)
    last = client.xrevrange(stream, max="+", min="-", count=1)
    if not last:
        return "0-0"
    entry = last[0][0]
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def follow(
    client: redis.Redis,
    stream: str,
    after: str,
    *,
    type_glob: str | None = None,
    count: int | None = None,
    block_s: float = 2.0,
    stop: threading.Event | None = None,
    on_retry: Callable[[Exception, float], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield events appended to `stream` after entry `after`, as they arrive, until `count` matched
    `type_glob` (every event when None) or `stop` is set. Connection errors are retried with backoff
    (`on_retry(error, delay_s)` is told), resuming after the last entry read."""
    if count is not None and count <= 0:
        return
    last, seen = after, 0
    backoff = Backoff(initial_s=0.2, max_s=_MAX_BACKOFF_S, jitter=0.0)
    block_ms = max(1, int(block_s * 1000))
    while stop is None or not stop.is_set():
        try:
            reply = client.xread({stream: last}, count=_READ_COUNT, block=block_ms)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            delay_s = backoff.next_s()
            if on_retry is not None:
                on_retry(exc, delay_s)
            if stop is None:
                time.sleep(delay_s)
            elif stop.wait(delay_s):
                return
            continue
        backoff.reset()
        for _, entries in reply or []:
            for raw_id, fields in entries:
                last = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                record = record_or_none(last, fields)
                if record is None or type_glob and not fnmatchcase(str(record.get("type", "")), type_glob):
                    continue
                yield record
                seen += 1
                if count is not None and seen >= count:
                    return
