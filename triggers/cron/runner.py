"""① Cron: every `orch triggers` replica computes the ticks; one Lua script per tick decides who fires it.

Safety never rests on a lock or on a leader: each replica that sees a tick due runs `fire_tick.lua`,
which in one atomic step refuses ticks not newer than the schedule's last decided tick (so a paused
or partitioned replica cannot fire an old tick), claims the per-tick key with SET NX (the fencing
token), and XADDs the event. The first replica wins; the others get "taken". Killing any replica loses
no tick while another is alive, since they all try every tick. "Now" is Redis's clock (TIME), so the
replicas agree on it even when their hosts' clocks drift.

After downtime (no replica alive), a replica compares the schedule's last decided tick, kept in Redis,
with now: ticks later than `misfire_grace_s` are missed and handled by the schedule's `catchup` policy:

    skip     fire none of them (default); count them in orch_schedule_ticks_total{result="missed"}
    latest   fire the newest one only, with data.missed = how many were skipped before it
    all      fire each one within `catchup_window_s`, oldest first; older ones count as missed
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from orchestrator import health
from orchestrator.backoff import RideOut
from orchestrator.cron import Tick
from orchestrator.events.envelope import Event
from orchestrator.events.publish import dedup_digest
from orchestrator.jsonutil import dumps
from orchestrator.metrics import EVENTS_RECEIVED, SCHEDULE_TICKS
from orchestrator.settings import Settings
from orchestrator.state import lua
from orchestrator.state.keys import Keys

from .config import ScheduleConfig

__all__ = ["CronRunner", "Decision", "decide", "tick_event"]

log = logging.getLogger(__name__)

MAX_SCAN = 100_000  # ticks examined per schedule per pass (a long outage of a per-second schedule)
MAX_WAIT_S = 1.0  # the longest sleep between passes: bounds how late a replica notices others' progress


@dataclass(frozen=True)
class Decision:
    """What to do with one tick: fire it (on time, or caught up) or record it missed."""

    tick: Tick
    result: str  # "fired" | "caught_up" | "missed"
    missed_before: int = 0


def decide(config: ScheduleConfig, cursor: datetime, now: datetime) -> tuple[list[Decision], datetime]:
    """Pure: the decisions for ticks in (cursor, now], and the new cursor."""
    grace = timedelta(seconds=config.misfire_grace_s)
    late: list[Tick] = []
    decisions: list[Decision] = []
    scanned = 0
    for tick in config.trigger.ticks(cursor, until=now, limit=MAX_SCAN):
        scanned += 1
        if now - tick.at <= grace:
            decisions.extend(_late(config, late, now))
            late = []
            decisions.append(Decision(tick, "fired"))
        else:
            late.append(tick)
        cursor = tick.at
    if scanned == MAX_SCAN and late and config.catchup != "all":
        # more missed ticks follow (a long outage): count these as missed, decide "latest" at the real end
        return [Decision(late[-1], "missed", len(late) - 1)], cursor
    decisions.extend(_late(config, late, now))
    return decisions, cursor


def _late(config: ScheduleConfig, late: list[Tick], now: datetime) -> list[Decision]:
    if not late:
        return []
    if config.catchup == "skip":
        return [Decision(late[-1], "missed", len(late) - 1)]
    if config.catchup == "latest":
        return [Decision(late[-1], "caught_up", len(late) - 1)]
    horizon = now - timedelta(seconds=config.catchup_window_s)
    old = [t for t in late if t.at < horizon]
    recent = late[len(old):]
    if not recent:
        return [Decision(old[-1], "missed", len(old) - 1)]
    return [Decision(t, "caught_up", len(old) if i == 0 else 0) for i, t in enumerate(recent)]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def tick_event(config: ScheduleConfig, decision: Decision, now: datetime) -> Event:
    """The event of one tick; its id is the schedule and the tick's UTC time, the same on every replica."""
    tick = decision.tick
    data: dict[str, Any] = {**config.data, "schedule": config.name, "scheduled_at": _iso(tick.at),
                            "scheduled_at_local": tick.local.isoformat(), "timezone": config.timezone,
                            "fired_at": _iso(now), "missed": decision.missed_before}
    if tick.note:
        data["dst"] = tick.note
    return Event(id=f"{config.name}@{_iso(tick.at)}", source=config.source, type=config.type, subject=config.name,
                 time=tick.at, datacontenttype="application/json", data=data)


class CronRunner:
    """Fires the project's enabled schedules from one replica; run as many replicas as you like."""

    def __init__(self, client: redis.Redis, settings: Settings, schedules: Sequence[ScheduleConfig], *,
                 replica: str | None = None) -> None:
        self._redis = client
        self._settings = settings
        self._keys = Keys(settings.key_prefix)
        self.schedules = [s for s in schedules if s.enabled]
        self.replica = replica or f"triggers-{socket.gethostname()}-{os.getpid()}"
        self._script = lua.register(client, "fire_tick")
        self._cursor: dict[str, datetime] = {}
        self.fired = 0

    def now(self) -> datetime:
        """Redis's clock: every replica agrees on it."""
        seconds, micros = self._redis.time()
        return datetime.fromtimestamp(int(seconds) + int(micros) / 1e6, UTC)

    def run(self, stop: threading.Event) -> None:
        """Fire ticks until `stop` is set; a Redis outage pauses firing (missed ticks follow `catchup`)."""
        if not self.schedules:
            return
        log.info("cron %s: %d schedules: %s", self.replica, len(self.schedules),
                 ", ".join(f"{s.name} ({s.cron} {s.timezone})" for s in self.schedules))
        ride = RideOut("cron", log, self._keys)
        while not stop.is_set():
            health.tick("cron", MAX_WAIT_S)  # liveness of `orch triggers` (orchestrator/health.py)
            try:
                wait = self.step()
                ride.ok(self._redis)
            except redis.RedisError as exc:  # away, READONLY after a failover, OOM...: missed ticks follow catchup
                wait = ride.failed(exc)
            except Exception:  # noqa: BLE001 - a bug in one schedule must not stop the others: keep trying, say so
                wait = ride.backoff.next_s()
                log.exception("cron: could not fire due ticks; retrying in %.1fs", wait)
            stop.wait(min(max(wait, 0.0), MAX_WAIT_S))
        log.info("cron %s: stopped", self.replica)

    def step(self) -> float:
        """Decide every due tick; returns the seconds until the next one is due."""
        now = self.now()
        pipe = self._redis.pipeline(transaction=False)
        for config in self.schedules:
            pipe.get(self._keys.schedule_last(config.name))
        lasts = pipe.execute()
        next_due: datetime | None = None
        for config, raw in zip(self.schedules, lasts, strict=True):
            cursor = self._cursor.get(config.name)
            last = datetime.fromtimestamp(int(raw) / 1000, UTC) if raw is not None else None
            if cursor is None:
                cursor = last or now  # a schedule never fired before starts now: nothing to catch up
            if last is not None and last > cursor:
                cursor = last  # another replica has moved on
            decisions, cursor = decide(config, cursor, now)
            for decision in decisions:
                self._decide(config, decision, now)
            self._cursor[config.name] = cursor
            upcoming = config.trigger.next_after(cursor)
            if upcoming is not None and (next_due is None or upcoming.at < next_due):
                next_due = upcoming.at
        return (next_due - now).total_seconds() if next_due is not None else MAX_WAIT_S

    def _decide(self, config: ScheduleConfig, decision: Decision, now: datetime) -> None:
        tick_ms = int(decision.tick.at.timestamp() * 1000)
        event = tick_event(config, decision, now)
        ttl_s = int(max(config.catchup_window_s, 86400.0) + 3600)
        keys = [self._keys.events, self._keys.schedule_tick(config.name, tick_ms),
                self._keys.schedule_last(config.name), self._keys.dedup(dedup_digest(event.source, event.id)),
                self._keys.metric(SCHEDULE_TICKS.name), self._keys.metric(EVENTS_RECEIVED.name)]
        args = [tick_ms, ttl_s, int(self._settings.event_dedup_window_s), self.replica, config.name,
                decision.result, decision.missed_before, dumps(event.to_dict())]
        won, detail = self._script(keys=keys, args=args)
        if not int(won):
            log.debug("cron: %s tick %s %s", config.name, _iso(decision.tick.at), _text(detail))
            return
        if decision.result == "missed":
            log.warning("cron: %s missed %d tick(s) up to %s (catchup: %s)", config.name,
                        decision.missed_before + 1, _iso(decision.tick.at), config.catchup)
            return
        self.fired += 1
        late = f", {decision.missed_before} missed before it" if decision.missed_before else ""
        log.info("cron: %s %s tick %s (%s)%s", config.name, decision.result.replace("_", " "),
                 _iso(decision.tick.at), decision.tick.local.strftime("%H:%M:%S %Z"), late)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
