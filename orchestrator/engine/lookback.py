"""⑧ The look-back of wait steps that have just started waiting: the events that came before they waited.

Read newest first. The events stream is read from its end back to `wait_lookback_s` before the step
started waiting, at most `wait_lookback_max_entries` entries (XREVRANGE, in chunks). On a busy stream the
budget is therefore spent on the entries nearest the moment the step began waiting (where an early event
is), and what it cannot reach is the oldest part of the window, never the newest.

Which event wins: of the matching events read, the earliest, the one that would have resumed the step
had it already been waiting (so the scan goes on to the window's start or the budget's end after a
match; reading that much is also what a look-back that finds nothing costs, the common case). The
entries read include those added after the step began waiting: one of those is matched by the live path
too, and whichever hit is applied first resumes the step (the other finds it resumed already).

One scan serves every look-back of a batch: the steps share the newest entries, and each takes only the
entries inside its own window. Pure except for the reads of the stream (`scan`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from ..errors import EventError
from ..events.envelope import Event, event_from_mapping
from ..jsonutil import loads
from ..rules.match import event_view
from ..workflows.waiting import Waiter, WaitHit

__all__ = ["Errors", "event_of", "hit_of", "scan"]

log = logging.getLogger(__name__)

_CHUNK = 500  # stream entries per read

Errors = Callable[[Waiter, Event, str], None]  # told of a waiter whose correlation failed to evaluate


def scan(client: redis.Redis, stream: str, waiters: list[Waiter], window_ms: int, budget: int,
         errors: Errors | None = None) -> list[WaitHit]:
    """The hits of `waiters` (steps that have just started waiting) among the events already in `stream`;
    `errors` hears of the correlations that could not be evaluated."""
    if not waiters:
        return []
    starts = {w.member: max(0, w.since_ms - window_ms) for w in waiters}
    by_type: dict[str, list[Waiter]] = {}
    for waiter in waiters:
        by_type.setdefault(waiter.event, []).append(waiter)
    found: dict[str, WaitHit] = {}
    cursor, read, floor = "+", 0, f"{min(starts.values())}-0"
    while read < budget:
        count = min(_CHUNK, budget - read)
        entries = client.xrevrange(stream, max=cursor, min=floor, count=count)
        for raw_id, fields in entries:
            _match_entry(raw_id.decode(), fields, by_type, starts, found, errors)
        read += len(entries)
        if len(entries) < count:
            return list(found.values())
        cursor = "(" + entries[-1][0].decode()
    log.warning("look-back stopped after %d entries (ORCH_WAIT_LOOKBACK_MAX_ENTRIES) before the start of its "
                "window: the oldest events of the window were not read", budget)
    return list(found.values())


def _match_entry(entry_id: str, fields: dict[bytes, bytes], by_type: dict[str, list[Waiter]],
                 starts: dict[str, int], found: dict[str, WaitHit], errors: Errors | None) -> None:
    """Match one entry (read newest first) with the waiters of its type whose window holds it: a match
    replaces the one found before, which is newer."""
    try:
        body = loads(fields[b"e"])
    except (KeyError, ValueError):
        return
    event_type = body.get("type") if isinstance(body, dict) else None
    candidates = by_type.get(event_type) if isinstance(event_type, str) else None
    event = event_of(body) if candidates else None
    if event is None or candidates is None:
        return
    view = event_view(event)
    ms = _ms(entry_id)
    for waiter in candidates:
        outcome = waiter.test(event, view) if ms >= starts[waiter.member] else False
        if outcome is True:
            found[waiter.member] = hit_of(waiter, event, view, entry_id)
        elif isinstance(outcome, str) and errors is not None:
            errors(waiter, event, outcome)


def _ms(entry_id: str) -> int:
    ms, _, _ = entry_id.partition("-")
    return int(ms) if ms.isdigit() else 0


def event_of(body: dict[str, Any]) -> Event | None:
    """The event of a stream entry's body; None when it is not a valid event."""
    try:
        return event_from_mapping(body)
    except (EventError, ValueError, KeyError, TypeError):
        return None


def hit_of(waiter: Waiter, event: Event, view: dict[str, Any], entry_id: str) -> WaitHit:
    via = {"event": event.id, "source": event.source, "type": event.type, "entry": entry_id}
    return WaitHit(waiter.run, waiter.node, waiter.attempt, view.get("data"), via, event)

