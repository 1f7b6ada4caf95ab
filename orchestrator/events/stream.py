"""② Consuming streams with a consumer group: batched reads, reclaiming, dead letters, safe trimming.

Used by the engine for the events stream and the results stream alike. Acknowledgements are queued on
the caller's transaction so that an entry is acknowledged exactly when its effects are committed.
Trimming never removes an entry some group has not yet been delivered or has not acknowledged: Redis
7.0 has no `XTRIM ... ACKED`, so the bound is computed from every group on the stream.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

__all__ = ["Entry", "StreamConsumer", "compare_ids", "default_consumer_name", "safe_trim", "settled_below",
           "settled_through", "trim_bound"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One stream entry as delivered to this consumer."""

    stream: str
    id: str
    fields: dict[bytes, bytes] = field(compare=False)


def default_consumer_name(role: str) -> str:
    """A consumer name unique to this process and this start: `<role>-<host>-<pid>-<4 hex>`. A container
    restarted under the same host name runs orch as the same pid: without the suffix the new engine would
    inherit the dead one's name, and with it the pending entries its fresh heartbeat would then shield from
    a takeover (engine/takeover.py)."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def compare_ids(a: str, b: str) -> int:
    """-1, 0 or 1 as stream id `a` sorts before, equal to or after `b`."""
    ta, tb = _id_tuple(a), _id_tuple(b)
    return (ta > tb) - (ta < tb)


class StreamConsumer:
    """One consumer of one group over several streams."""

    def __init__(self, client: redis.Redis, streams: Sequence[str], group: str, consumer: str, *,
                 batch_size: int, block_s: float) -> None:
        self._redis = client
        self.streams = list(streams)
        self.group = group
        self.consumer = consumer
        self._batch = batch_size
        self._block_ms = max(1, int(block_s * 1000))

    def ensure_groups(self) -> None:
        """Create the group on every stream (from the start, so events accepted earlier are processed)."""
        for stream in self.streams:
            try:
                self._redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def read(self, block: bool = True, block_s: float | None = None) -> list[Entry]:
        """New entries from all streams, waiting up to the block time (or `block_s`) when there are none."""
        wait_ms = self._block_ms if block_s is None else max(1, int(block_s * 1000))
        reply = self._redis.xreadgroup(self.group, self.consumer, {s: ">" for s in self.streams},
                                       count=self._batch, block=wait_ms if block else None)
        return _entries(reply)

    def ack(self, pipe: Any, entries: Iterable[Entry]) -> None:
        """Queue XACK of `entries` on `pipe` (the transaction that commits their effects)."""
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            if entry.stream:  # entries made up by the engine itself (a lost worker's attempt) have none
                by_stream.setdefault(entry.stream, []).append(entry.id)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)

    def claim_idle(self, min_idle_s: float, count: int = 100) -> list[Entry]:
        """Take over entries pending longer than `min_idle_s` on any consumer (including dead ones)."""
        claimed: list[Entry] = []
        for stream in self.streams:
            reply = self._redis.xautoclaim(stream, self.group, self.consumer, int(min_idle_s * 1000),
                                           start_id="0-0", count=count)
            messages = reply[1] if len(reply) > 1 else []
            for entry_id, fields in messages:
                if fields is not None:
                    claimed.append(Entry(stream, _decode(entry_id), dict(fields)))
            if len(reply) > 2 and reply[2]:
                log.error("%d pending entries of %s were deleted before processing: %s",
                          len(reply[2]), stream, [_decode(i) for i in reply[2]][:10])
        return claimed

    def over_delivered(self, min_idle_s: float, max_deliveries: int, count: int = 100) -> list[tuple[str, str, int]]:
        """(stream, id, deliveries) of idle pending entries delivered `max_deliveries` times or more."""
        found = []
        for stream in self.streams:
            rows = self._redis.xpending_range(stream, self.group, min="-", max="+", count=count,
                                              idle=int(min_idle_s * 1000))
            for row in rows:
                if int(row["times_delivered"]) >= max_deliveries:
                    found.append((stream, _decode(row["message_id"]), int(row["times_delivered"])))
        return found

    def dead_letter(self, dead_stream: str, stream: str, entry_id: str, deliveries: int, reason: str,
                    maxlen: int) -> None:
        """Move one entry to `dead_stream` with the reason, and acknowledge it, atomically."""
        rows = self._redis.xrange(stream, min=entry_id, max=entry_id, count=1)
        payload = dict(rows[0][1]) if rows else {}
        record: dict[Any, Any] = {b"stream": stream, b"id": entry_id, b"deliveries": deliveries,
                                  b"reason": reason[:4000], b"at": f"{time.time():.3f}"}
        record.update({b"payload_" + k: v for k, v in payload.items()})
        pipe = self._redis.pipeline(transaction=True)
        pipe.xadd(dead_stream, record, maxlen=maxlen, approximate=True)
        pipe.xack(stream, self.group, entry_id)
        pipe.execute()

    def forget_idle_consumers(self, idle_s: float) -> int:
        """Delete consumers of the group that hold no pending entries and were idle for `idle_s`."""
        removed = 0
        for stream in self.streams:
            for consumer in self._redis.xinfo_consumers(stream, self.group):
                name = _decode(consumer["name"])
                if name != self.consumer and int(consumer["pending"]) == 0 and int(consumer["idle"]) > idle_s * 1000:
                    self._redis.xgroup_delconsumer(stream, self.group, name)
                    removed += 1
        return removed


def _entries(reply: Any) -> list[Entry]:
    entries: list[Entry] = []
    if not reply:
        return entries
    items = reply.items() if isinstance(reply, dict) else reply
    for stream, messages in items:
        name = _decode(stream)
        for entry_id, fields in messages:
            if fields is not None:
                entries.append(Entry(name, _decode(entry_id), dict(fields)))
    return entries


def _first_needed(client: redis.Redis, stream: str, group: dict[str, Any]) -> str:
    """The lowest id `group` still needs: its oldest pending entry, or the first it was not delivered."""
    summary = client.xpending(stream, _decode(group["name"]))
    if int(summary["pending"]) > 0:
        return _decode(summary["min"])
    ms, seq = _id_tuple(_decode(group["last-delivered-id"]))
    return f"{ms}-{seq + 1}"


def trim_bound(client: redis.Redis, stream: str) -> str | None:
    """The lowest id every group still needs (oldest pending, or first undelivered), or None if no group."""
    bound: str | None = None
    for group in client.xinfo_groups(stream):
        candidate = _first_needed(client, stream, group)
        if bound is None or compare_ids(candidate, bound) < 0:
            bound = candidate
    return bound


def settled_below(client: redis.Redis, stream: str, group: str) -> str | None:
    """The lowest id of `stream` that `group` still needs (its oldest pending entry, or the first it was
    not delivered): every entry below it was delivered and acknowledged, and with acknowledgements
    committed with their effects, has had its effect. "0-0" when the group does not exist (it needs every
    entry); None when the stream does not exist (nothing was ever written to it)."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError as exc:
        if "no such key" in str(exc).lower():
            return None
        raise
    info = next((g for g in groups if _decode(g["name"]) == group), None)
    return _first_needed(client, stream, info) if info is not None else "0-0"


def settled_through(bound: str | None, entry_id: str) -> bool:
    """Whether every entry up to `entry_id` lies below `bound` (from `settled_below`)."""
    return bound is None or compare_ids(bound, entry_id) > 0


def safe_trim(client: redis.Redis, stream: str, retention_s: float, now_s: float | None = None) -> int:
    """Trim entries older than `retention_s` that every group has delivered and acknowledged."""
    try:
        bound = trim_bound(client, stream)
    except redis.ResponseError:  # the stream does not exist yet
        return 0
    if bound is None:
        return 0  # nobody consumes this stream: every entry is undelivered
    cutoff_ms = int(((now_s if now_s is not None else time.time()) - retention_s) * 1000)
    cutoff = f"{max(cutoff_ms, 0)}-0"
    minid = cutoff if compare_ids(cutoff, bound) < 0 else bound
    return int(client.xtrim(stream, minid=minid, approximate=False))
