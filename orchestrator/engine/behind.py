"""③ What an engine that cannot load the active rule-set version still does (engine/reload.py: "behind").

Only events need the active rules: which runs an event starts (and a released hold, and a rerun, which
takes the workflow's current version) depends on the version. Everything else carries its own spec, in
the run: task records, the other control records (cancel, retry, approve, start), timers (retries, wait
and run timeouts) and the maintenance chores. So a behind engine

    reads the results stream only (not the events one: events stay for the engines that are current),
    hands back (`hand_back`: XCLAIM IDLE JUSTID, no extra delivery) the entries it holds that need the
    rules, so that an engine on the active version takes them over at its next reclaim, and
    goes on with the rest, timers and chores; its batches without events commit under any version.

Should every engine be behind, events wait in their stream until one can load the active version; runs
already started go on to their end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import redis

from ..events.stream import Entry, StreamConsumer
from ..flow.release import RELEASE_FIELD
from ..jsonutil import loads
from ..settings import Settings
from ..state.keys import ENGINE_GROUP, Keys
from ..workflows.records import ControlRecord
from .batch import Batch

__all__ = ["Host", "batch_needs_rules", "hand_back", "needs_rules", "read_results_only", "split"]


def needs_rules(entry: Entry, keys: Keys) -> bool:
    """Whether applying `entry` depends on the active rule-set version: an event, a released hold, a rerun."""
    if entry.stream == keys.events or RELEASE_FIELD in entry.fields:
        return True
    raw = entry.fields.get(b"c")
    if raw is None:
        return False
    try:
        body: Any = loads(raw)
    except ValueError:
        return False  # undecodable: dead-lettered by whoever plans it
    return isinstance(body, dict) and body.get("action") == "rerun"


def batch_needs_rules(batch: Batch) -> bool:
    """Whether a planned batch depends on the rule-set version it was planned under: it has events
    (planned, settled or resuming waits), run requests (released holds) or reruns. A look-back's hits do
    not: they resume a step by the run's own spec, so a behind engine fires look-back timers too."""
    return bool(batch.bodies or batch.requests) or any(
        isinstance(record, ControlRecord) and record.action == "rerun" for _, record in batch.records)


def split(entries: Iterable[Entry], keys: Keys) -> tuple[list[Entry], list[Entry]]:
    """(those that need the rules, the rest)."""
    rules: list[Entry] = []
    rest: list[Entry] = []
    for entry in entries:
        (rules if needs_rules(entry, keys) else rest).append(entry)
    return rules, rest


class Host(Protocol):
    """What handing back uses of the engine."""

    consumer: StreamConsumer
    keys: Keys

    @property
    def client(self) -> redis.Redis: ...

    @property
    def settings(self) -> Settings: ...


def hand_back(host: Host, entries: Sequence[Entry], scan: int = 0) -> int:
    """Mark `entries`, and the entries of the events stream this consumer holds (up to `scan`), idle for
    `idle_s`, so that other engines' reclaiming takes them over at once; the delivery to this engine is not
    counted (RETRYCOUNT one less), so entries that only behind engines see are not dead-lettered. How many."""
    client, consumer, keys, idle_s = host.client, host.consumer, host.keys, host.settings.engine_claim_idle_s
    by_stream: dict[str, set[str]] = {}
    for entry in entries:
        if entry.stream:
            by_stream.setdefault(entry.stream, set()).add(entry.id)
    if scan:
        held = client.xpending_range(keys.events, ENGINE_GROUP, "-", "+", scan, consumername=consumer.consumer)
        by_stream.setdefault(keys.events, set()).update(_text(h["message_id"]) for h in held)
    count = 0
    for stream, ids in by_stream.items():
        for delivered, same in _by_deliveries(client, stream, consumer.consumer, ids).items():
            client.xclaim(stream, ENGINE_GROUP, consumer.consumer, 0, same, idle=int(idle_s * 1000),
                          retrycount=max(0, delivered - 1), justid=True)
            count += len(same)
    return count


def _by_deliveries(client: redis.Redis, stream: str, me: str, ids: Iterable[str]) -> dict[int, list[str]]:
    """The entries among `ids` this consumer holds, by how many times each was delivered."""
    out: dict[int, list[str]] = {}
    for entry_id in sorted(ids):
        rows = client.xpending_range(stream, ENGINE_GROUP, entry_id, entry_id, 1, consumername=me)
        if rows:
            out.setdefault(int(rows[0]["times_delivered"]), []).append(entry_id)
    return out


def read_results_only(consumer: StreamConsumer, keys: Keys, behind: bool) -> None:
    """Let `consumer` read (and reclaim) the results stream only while behind, both streams otherwise."""
    consumer.streams = [keys.results] if behind else [keys.events, keys.results]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
