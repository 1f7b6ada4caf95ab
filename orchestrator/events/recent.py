"""Reading back events from the stream as records: recent ones newest first (`orch events list`,
GET /events), and the record of one entry, which `orch events tail` prints too."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

import redis

from ..jsonutil import loads
from ..state.keys import Keys

__all__ = ["event_record", "record_or_none", "recent_events"]

log = logging.getLogger(__name__)

_SCAN_FACTOR = 20


def event_record(entry_id: str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """One stream entry as `orch events list --json` shows it: `entry_id`, `received_at`, the event."""
    event = loads(fields[b"e"])
    received = datetime.fromtimestamp(int(entry_id.partition("-")[0]) / 1000, UTC)
    return {"entry_id": entry_id, "received_at": received.isoformat().replace("+00:00", "Z"), **event}


def record_or_none(entry_id: str, fields: dict[bytes, bytes]) -> dict[str, Any] | None:
    """`event_record`, or None (logged) for an entry orch did not write, so the rest still shows."""
    try:
        return event_record(entry_id, fields)
    except (KeyError, ValueError, TypeError) as exc:  # TypeError: JSON that is not an object
        log.warning("skipping stream entry %s: not an orch event (%s)", entry_id, exc)
        return None


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
            record = record_or_none(entry_id.decode(), fields)
            if record is None or type_glob and not fnmatchcase(str(record.get("type", "")), type_glob):
                continue
            out.append(record)
            if len(out) >= limit:
                break
        last = rows[-1][0].decode()
        ms, _, seq = last.partition("-")
        upper = f"({ms}-{seq}"
    return out
