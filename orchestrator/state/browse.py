"""Paging through retained runs for people (the web UI): newest first, filtered, never a full scan.

A page is one ZREVRANGEBYSCORE on the index that holds exactly the runs of the status and/or workflow
asked for (RunStore.index), bounded by the time window, plus one pipelined HGET of each run's meta.
The cursor is the last run shown, `<created ms>:<run id>`, so a page starts right after it even when
runs share a millisecond, and new runs arriving meanwhile do not shift later pages.

Filters no index holds (the rule; an event id searched for) are applied to the metas read, reading at
most `scan_limit` index entries for one page: the page then says how far it looked (`scanned`), and
its cursor continues from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..jsonutil import loads
from .store import RunStore

__all__ = ["Page", "RunQuery", "page_runs"]

_CHUNK = 200


@dataclass(frozen=True)
class RunQuery:
    """What a person asked to see."""

    status: str | None = None
    workflow: str | None = None
    rule: str | None = None
    event_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = None
    limit: int = 50
    scan_limit: int = 5000

    @property
    def indexed_only(self) -> bool:
        return not self.rule and not self.event_id


@dataclass
class Page:
    runs: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None
    scanned: int = 0
    exhausted_scan: bool = False  # stopped at scan_limit before filling the page


def _bounds(query: RunQuery) -> tuple[str, str]:
    upper = "+inf" if query.until is None else str(int(query.until.timestamp() * 1000))
    lower = "-inf" if query.since is None else str(int(query.since.timestamp() * 1000))
    if query.cursor:
        ms, _, _ = query.cursor.partition(":")
        if ms.isascii() and ms.isdigit():
            upper = ms if upper == "+inf" else str(min(int(ms), int(float(upper))))
    return upper, lower


def _after_cursor(entries: list[tuple[bytes, float]], cursor: str | None) -> list[tuple[str, int]]:
    """Entries strictly after the cursor in newest-first order (same ms: ZREV orders members descending)."""
    out = [(member.decode(), int(score)) for member, score in entries]
    if not cursor or ":" not in cursor:
        return out
    ms, _, last = cursor.partition(":")
    if not (ms.isascii() and ms.isdigit()):
        return out
    return [(m, s) for m, s in out if s < int(ms) or (s == int(ms) and m < last)]


def _next_entries(client: Any, index: str, bounds: tuple[str, str], cursor: str | None,
                  want: int) -> list[tuple[str, int]]:
    """Up to `want` index entries after the cursor: skips, a window at a time, the runs of the cursor's
    own millisecond already shown (a batch of events creates many runs in one millisecond)."""
    start = 0
    while True:
        raw = client.zrevrangebyscore(index, bounds[0], bounds[1], start=start, num=want + 64, withscores=True)
        entries = _after_cursor(raw, cursor)
        if entries or len(raw) < want + 64:
            return entries[:want]
        start += len(raw)


def _wanted(meta: dict[str, Any], query: RunQuery) -> bool:
    if query.rule and meta.get("rule") != query.rule:
        return False
    event = meta.get("event")
    return not (query.event_id and (not isinstance(event, dict) or event.get("id") != query.event_id))


def page_runs(store: RunStore, query: RunQuery) -> Page:
    """One page of run summaries for `query`, newest first."""
    client = store._redis  # noqa: SLF001 - the store's own connection; reads only
    index = store.index(status=query.status, workflow=query.workflow)
    upper, lower = _bounds(query)
    page, cursor = Page(), query.cursor
    while len(page.runs) < query.limit:
        want = query.limit - len(page.runs) if query.indexed_only else min(_CHUNK, query.scan_limit - page.scanned)
        entries = _next_entries(client, index, (upper, lower), cursor, want)
        if not entries:
            page.next_cursor = None
            return page
        pipe = client.pipeline(transaction=False)
        for run_id, _ in entries:
            pipe.hget(store.keys.run(run_id), "meta")
        for (run_id, score), blob in zip(entries, pipe.execute(), strict=True):
            page.scanned += 1
            cursor = f"{score}:{run_id}"
            meta = _meta(blob)
            if meta is not None and _wanted(meta, query):
                page.runs.append(meta)
                if len(page.runs) >= query.limit:
                    break
        page.next_cursor = cursor
        upper = (cursor or upper).partition(":")[0]
        if page.scanned >= query.scan_limit and len(page.runs) < query.limit:
            page.exhausted_scan = True
            return page
    return page


def _meta(blob: bytes | None) -> dict[str, Any] | None:
    if blob is None:
        return None  # expired since the index was read
    try:
        meta = loads(blob)
    except ValueError:
        return None
    if not isinstance(meta, dict) or not all(isinstance(meta.get(k), str) for k in ("id", "status", "created_at")):
        return None  # read back from Redis: a meta that is not a run's is left out, never shown half
    return meta
