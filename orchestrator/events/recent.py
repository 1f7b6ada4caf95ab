"""Reading back recent events from the stream, newest first (for `orch events list` and GET /events)."""

from __future__ import annotations

from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

import redis

from ..jsonutil import loads
from ..state.keys import Keys

__all__ = ["recent_events"]

_SCAN_FACTOR = 20


def recent_events(client: redis.Redis, keys: Keys, *, limit: int = 50, type_glob: str | None = None) -> list[dict[str, Any]]:
    """Up to `limit` events, newest first, each with its stream `entry_id` and `received_at` time;
    optionally only those whose type matches `type_glob`."""
    out: list[dict[str, Any]] = []
    upper = "+"
    scanned = 0
    while len(out) < limit and scanned < limit * _SCAN_FACTOR:
        rows = client.xrevrange(keys.events, max=upper, min="-", count=max(limit, 100))
        if not rows:
            break
        for entry_id, fields in rows:
            scanned += 1
            event = loads(fields[b"e"])
            if type_glob and not fnmatchcase(str(event.get("type", "")), type_glob):
                continue
            entry = entry_id.decode()
            received = datetime.fromtimestamp(int(entry.partition("-")[0]) / 1000, UTC)
            out.append({"entry_id": entry, "received_at": received.isoformat().replace("+00:00", "Z"), **event})
            if len(out) >= limit:
                break
        last = rows[-1][0].decode()
        ms, _, seq = last.partition("-")
        upper = f"({ms}-{seq}"
    return out
