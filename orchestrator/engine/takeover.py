"""② Taking over a dead engine's entries at once, rather than after `engine_claim_idle_s`.

Every engine beats into `<p>:engines` (consumer name -> epoch ms, beat.py) every `engine_beat_s`. At
each reclaim pass (maintenance.py, PendingEntries) a live engine reads the beats and the group's
consumers (XINFO CONSUMERS, per stream) and finds the dead ones (`dead_consumers`, pure):

    a consumer whose beat is older than `engine_dead_after_s` and that has not read for as long either
    (Redis's idle time: a live engine reads every `engine_block_s`, so a clock that runs behind on the
    engine's machine cannot make it look dead), or, never having beaten (or forgotten after a day), one
    that has not read for as long;
    never this engine itself; never an engine whose beat is fresh, however long its entries wait;
    silences are measured beyond this engine's own (a busy or paused engine sees every beat older by as
    much as its own is), and nobody is judged within `engine_dead_after_s` (plus the longest backoff) of a
    Redis error this engine met: after an outage every beat is old, and the others need as long to beat again.

For each, it lists that consumer's pending entries (XPENDING ... <consumer>; XAUTOCLAIM has no consumer
filter), claims them with XCLAIM min-idle 0 and processes them as reclaimed entries (not those already
delivered `engine_max_deliveries` times: a poison entry that kills each engine in turn is left to the
dead-letter step, which waits for `engine_claim_idle_s`); once the consumer
holds none it is deleted from the group (forget_consumer.lua: checked and deleted in one step, so an
engine wrongly thought dead that reads in between loses nothing). So a dead engine's batch waits about
`engine_dead_after_s` plus one maintenance interval, not a minute. The idle-based reclaim stays as the
fallback (an engine that beats but is stuck in one step for `engine_claim_idle_s`).

An engine only stalled (a long step, a pause) may be taken for dead and its entries processed twice:
harmless, as for any redelivery: run ids are derived from (rule, event), the commit is WATCH/MULTI and
finds the run already there, flow-control decisions are memoised (flow/decide.py), task records carry
their attempt. Two engines taking over the same dead one at once likewise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..events.stream import Entry
from ..state import lua

if TYPE_CHECKING:
    from .maintenance import Host

__all__ = ["Consumer", "Takeover", "dead_after_ms", "dead_consumers"]

log = logging.getLogger(__name__)

OUTAGE_BACKOFF_S = 10.0  # the longest an engine backs off from Redis errors (backoff.py): time to beat again


@dataclass(frozen=True)
class Consumer:
    """One consumer of the engine group, merged over its streams."""

    name: str
    pending: int
    idle_ms: int  # since it last read from any stream


def dead_after_ms(dead_after_s: float, beat_s: float) -> int:
    """The silence after which an engine is dead: `engine_dead_after_s`, but never under two beats, so a
    setting below the beat interval cannot make live engines look dead."""
    return int(max(dead_after_s, 2 * beat_s) * 1000)


def dead_consumers(consumers: Iterable[Consumer], beats: Mapping[str, float], now_ms: float, silence_ms: int,
                   me: str) -> list[str]:
    """Names of the consumers that are not `me` and are dead: beat older than `silence_ms` (beyond `me`'s own
    beat's age) and no read for as long, or no beat and no read for as long."""
    mine = beats.get(me)
    silence_ms += int(max(0.0, now_ms - mine)) if mine is not None else 0
    dead = []
    for consumer in consumers:
        if consumer.name == me:
            continue
        beat = beats.get(consumer.name)
        silent_ms = min(now_ms - beat, consumer.idle_ms) if beat is not None else consumer.idle_ms
        if silent_ms > silence_ms:
            dead.append(consumer.name)
    return sorted(dead)


def merge_consumers(per_stream: Iterable[list[dict[str, Any]]]) -> list[Consumer]:
    """XINFO CONSUMERS replies of several streams, one Consumer per name (pending summed, idle the least)."""
    merged: dict[str, Consumer] = {}
    for reply in per_stream:
        for row in reply:
            name = _text(row["name"])
            pending, idle = int(row["pending"]), int(row["idle"])
            if name in merged:
                old = merged[name]
                pending, idle = pending + old.pending, min(idle, old.idle_ms)
            merged[name] = Consumer(name, pending, idle)
    return list(merged.values())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Takeover:
    """Claim the pending entries of dead engines and process them; forget the dead once they hold none."""

    def __init__(self, host: Host, clock: Callable[[], float] = time.time) -> None:
        self._host = host
        self._clock = clock
        self._forget = lua.register(host.client, "forget_consumer")

    def run(self) -> int:
        """One pass; the number of entries taken over."""
        host, settings = self._host, self._host.settings
        beats, consumers, now_ms = self._read()
        silence = dead_after_ms(settings.engine_dead_after_s, settings.engine_beat_s)
        failed_s = getattr(host, "redis_failed_at_s", 0.0)  # the engine loop's last Redis error (loop.py)
        if now_ms < (failed_s + settings.engine_dead_after_s + OUTAGE_BACKOFF_S) * 1000:
            return 0
        taken = 0
        for name in dead_consumers(consumers, beats, now_ms, silence, host.consumer.consumer):
            entries = self._claim(name)
            if entries:
                beat = beats.get(name)
                age = f"{(now_ms - beat) / 1000:.1f} s old" if beat is not None else "never seen"
                log.warning("engine: took over %d entries of engine %s (heartbeat %s)", len(entries), name, age)
                host.process(entries, retried=True)
                taken += len(entries)
            self._forget_if_empty(name)
        return taken

    def _read(self) -> tuple[dict[str, float], list[Consumer], float]:
        host = self._host
        pipe = host.client.pipeline(transaction=False)
        pipe.zrange(host.keys.engines, 0, -1, withscores=True)
        for stream in host.consumer.streams:
            pipe.xinfo_consumers(stream, host.consumer.group)
        # "now" is read before the beats (with the clock they are written with): should this engine pause in
        # between, the beats only look fresher than they are, never older
        now_ms = self._clock() * 1000
        reply = pipe.execute()
        beats = {_text(name): float(score) for name, score in reply[0]}
        return beats, merge_consumers(reply[1:]), now_ms

    def _claim(self, name: str) -> list[Entry]:
        """Up to one batch of `name`'s pending entries per stream, now this engine's."""
        host = self._host
        group, me, count = host.consumer.group, host.consumer.consumer, host.settings.engine_batch_size
        entries: list[Entry] = []
        for stream in host.consumer.streams:
            rows = host.client.xpending_range(stream, group, "-", "+", count, consumername=name)
            # an entry delivered engine_max_deliveries times may be what kills engines: it is left to the
            # dead-letter step (after engine_claim_idle_s), not handed from engine to engine for ever
            ids = [row["message_id"] for row in rows if int(row["times_delivered"]) < host.settings.engine_max_deliveries]
            if not ids:
                continue
            # deleted (trimmed) entries are dropped from the pending list by XCLAIM and not returned
            for entry_id, fields in host.client.xclaim(stream, group, me, 0, ids):
                if fields is not None:
                    entries.append(Entry(stream, _text(entry_id), dict(fields)))
        return entries

    def _forget_if_empty(self, name: str) -> None:
        host = self._host
        for stream in host.consumer.streams:
            self._forget(keys=[stream], args=[host.consumer.group, name])
