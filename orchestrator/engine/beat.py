"""The engine's heartbeat: a maintenance chore that says, every `engine_beat_s`, that this engine is alive.

It writes `<p>:engines` (consumer name -> epoch ms of its last beat) and drops members silent for a day
in the same round trip, so the zset holds the engines of the last day and never grows beyond them.
`orch api` exports the newest beat as `orch_engine_last_seen_timestamp_seconds`, which the "no engine
heartbeat" alert watches. A beat is written after a step and the other chores, so an engine stuck in
one step, or cut off from Redis, stops beating. Other engines read the beats to take over the pending
entries of an engine silent for `engine_dead_after_s` (takeover.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..settings import Settings

if TYPE_CHECKING:
    from .maintenance import Host

__all__ = ["BEAT_EVERY_S", "FORGET_ENGINES_AFTER_S", "EngineBeat"]

BEAT_EVERY_S = 5.0  # the default of engine_beat_s
FORGET_ENGINES_AFTER_S = 86400.0


class EngineBeat:
    """ZADD this engine's beat to `<p>:engines`; ZREMRANGEBYSCORE the engines silent for a day."""

    def __init__(self, host: Host, clock: Callable[[], float] = time.time) -> None:
        self._host = host
        self._clock = clock

    def every_s(self, settings: Settings) -> float:
        return settings.engine_beat_s

    def run(self, now_s: float, force: bool) -> None:
        now_ms = int(self._clock() * 1000)
        key = self._host.keys.engines
        pipe = self._host.client.pipeline(transaction=False)
        pipe.zadd(key, {self._host.consumer.consumer: now_ms})
        pipe.zremrangebyscore(key, "-inf", f"({now_ms - int(FORGET_ENGINES_AFTER_S * 1000)}")
        pipe.execute()
