"""The health verdicts (orchestrator/health.py): pure, the clock passed in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator import health
from orchestrator.health import Beat, Verdict, liveness, readiness


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    health.reset()
    yield
    health.reset()


def test_a_loop_is_stuck_only_past_the_larger_of_the_setting_and_three_periods() -> None:
    beats = [Beat("engine", last_s=100.0, period_s=1.0)]
    assert liveness(beats, now_s=159.9, stuck_after_s=60).ok
    stuck = liveness(beats, now_s=160.5, stuck_after_s=60)
    assert not stuck.ok and stuck.reason.startswith("engine loop stuck: last iteration 60.5 s ago (allowed 60.0 s)")
    slow = [Beat("cron", last_s=100.0, period_s=30.0)]
    assert liveness(slow, now_s=185.0, stuck_after_s=60).ok, "3 periods (90 s) beat the setting"
    assert not liveness(slow, now_s=191.0, stuck_after_s=60).ok


def test_a_worker_running_a_task_may_be_silent_for_what_is_left_of_its_timeout() -> None:
    busy = [Beat("worker", last_s=0.0, period_s=1.0, extra_s=500.0)]
    assert liveness(busy, now_s=550.0, stuck_after_s=60).ok
    assert not liveness(busy, now_s=561.0, stuck_after_s=60).ok


def test_one_stuck_loop_of_several_fails_liveness_and_is_named() -> None:
    beats = [Beat("triggers", 10.0, 1.0), Beat("cron", 0.0, 1.0)]
    verdict = liveness(beats, now_s=12.0, stuck_after_s=5)
    assert not verdict.ok and verdict.reason.startswith("cron loop stuck")
    assert verdict.details["loops_age_s"] == {"triggers": 2.0, "cron": 12.0}


def test_before_any_loop_ran_the_process_is_live() -> None:
    verdict = liveness([], now_s=5.0, stuck_after_s=60)
    assert verdict.ok and verdict.reason.startswith("starting")


def test_readiness_needs_liveness_redis_and_every_condition() -> None:
    live = Verdict(True, "1 loop(s) progressing", {"loops_age_s": {"engine": 0.1}})
    assert readiness(live, None, {"ruleset": None}) == Verdict(True, "ready", {
        "loops_age_s": {"engine": 0.1}, "redis": "ok", "conditions": {"ruleset": "ok"}})
    down = readiness(live, "ConnectionError: refused", {"ruleset": None})
    assert not down.ok and down.reason == "Redis unreachable: ConnectionError: refused"
    behind = readiness(live, None, {"ruleset": "cannot load rule-set version abc"})
    assert not behind.ok and behind.reason == "ruleset: cannot load rule-set version abc"
    dead = readiness(Verdict(False, "engine loop stuck"), None, {})
    assert not dead.ok and dead.reason == "engine loop stuck"


def test_state_reads_the_ticks_and_the_conditions_and_a_failing_condition_is_a_reason() -> None:
    health.tick("worker", 1.0, lambda: 7.0)
    health.require("heartbeat", lambda: None)
    health.require("broken", lambda: 1 / 0)  # type: ignore[arg-type,return-value]
    beats, conditions = health.state()
    assert [(b.name, b.period_s, b.extra_s) for b in beats] == [("worker", 1.0, 7.0)]
    assert conditions == {"heartbeat": None, "broken": "ZeroDivisionError: division by zero"}
