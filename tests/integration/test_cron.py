"""Cron replicas on a real Redis: one event per tick, fencing of stale replicas, catch-up policies."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import redis

from orchestrator.jsonutil import loads
from orchestrator.metrics import SCHEDULE_TICKS, counter_field
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from triggers.cron import CronRunner, Decision, ScheduleConfig

from ..helpers import EXAMPLES, wait_for

KEYS = Keys()


def tick_events(r: redis.Redis, schedule: str | None = None) -> list[dict[str, object]]:
    events = [loads(fields[b"e"]) for _, fields in r.xrange(KEYS.events)]
    return [e for e in events if schedule is None or e["source"] == f"/schedules/{schedule}"]


def scheduled(events: list[dict[str, object]]) -> list[datetime]:
    return [datetime.fromisoformat(str(e["data"]["scheduled_at"]).replace("Z", "+00:00"))  # type: ignore[index]
            for e in events]


def per_second(name: str = "tick", **options: object) -> ScheduleConfig:
    return ScheduleConfig(name=name, cron="* * * * * *", misfire_grace_s=1, **options)  # type: ignore[arg-type]


def test_two_replicas_fire_each_tick_exactly_once(r: redis.Redis, redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, project=EXAMPLES)
    runners = [CronRunner(redis.Redis.from_url(redis_url), settings, [per_second()], replica=f"r{i}")
               for i in range(2)]
    stop = threading.Event()
    threads = [threading.Thread(target=runner.run, args=(stop,)) for runner in runners]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(tick_events(r)) >= 4, 10, "four ticks")
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)

    times = scheduled(tick_events(r))
    assert len(times) == len(set(times))  # no tick twice
    assert all(b - a == timedelta(seconds=1) for a, b in zip(times, times[1:], strict=False))  # none skipped
    assert sum(runner.fired for runner in runners) == len(times)
    event = tick_events(r)[0]
    assert event["type"] == "schedule.fired" and event["id"] == f"tick@{event['data']['scheduled_at']}"  # type: ignore[index]


def test_a_stale_replica_cannot_fire_an_old_tick(r: redis.Redis, redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, project=EXAMPLES)
    config = per_second()
    fresh, stale = (CronRunner(r, settings, [config], replica=name) for name in ("fresh", "stale"))
    now = fresh.now().replace(microsecond=0)
    new_tick, old_tick = config.trigger.next_after(now), config.trigger.next_after(now - timedelta(seconds=5))
    assert new_tick is not None and old_tick is not None

    fresh._decide(config, Decision(new_tick, "fired"), now)
    stale._decide(config, Decision(old_tick, "fired"), now)  # e.g. resumed after SIGSTOP
    stale._decide(config, Decision(new_tick, "fired"), now)  # the same tick again: taken

    assert scheduled(tick_events(r)) == [new_tick.at]
    assert r.get(KEYS.schedule_tick("tick", int(new_tick.at.timestamp() * 1000))) == b"fresh"


def test_catchup_after_downtime_follows_each_policy(r: redis.Redis, redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, project=EXAMPLES)
    configs = [per_second("skip"), per_second("latest", catchup="latest"), per_second("all", catchup="all")]
    runner = CronRunner(r, settings, configs, replica="back")
    now = runner.now()
    last = now.replace(microsecond=0) - timedelta(seconds=10)  # every replica was down for ~10 ticks
    for config in configs:
        r.set(KEYS.schedule_last(config.name), int(last.timestamp() * 1000))

    runner.step()

    since = [t for t in scheduled(tick_events(r, "skip"))]
    assert all(t >= now - timedelta(seconds=1) for t in since)  # only the on-time tick, if one was due
    latest = tick_events(r, "latest")
    assert latest and latest[0]["data"]["missed"] >= 7  # type: ignore[index,operator]
    all_times = scheduled(tick_events(r, "all"))
    assert all_times[0] == last + timedelta(seconds=1)
    assert all(b - a == timedelta(seconds=1) for a, b in zip(all_times, all_times[1:], strict=False))
    assert all_times[-1] >= now - timedelta(seconds=1)
    missed = r.hget(KEYS.metric(SCHEDULE_TICKS.name), counter_field("skip", "missed"))
    assert missed is not None and int(missed) >= 8
    assert r.hget(KEYS.metric(SCHEDULE_TICKS.name), counter_field("all", "caught_up")) is not None


def test_a_schedule_never_fired_starts_from_now(r: redis.Redis, redis_url: str) -> None:
    runner = CronRunner(r, Settings(redis_url=redis_url, project=EXAMPLES), [per_second(catchup="all")])
    runner.step()
    assert tick_events(r) == []  # no history: nothing to catch up
    assert runner.now() - datetime.now(UTC) < timedelta(seconds=5)  # Redis's clock, close to ours here
