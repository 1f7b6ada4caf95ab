"""flow_decide.lua and flow_release.lua agree with the pure arithmetic of orchestrator/flow/maths.py, on
random sequences of events (and releases) for one key."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import redis

from orchestrator.flow.maths import debounce_due, throttle, window_admits
from orchestrator.state import lua
from orchestrator.state.keys import Keys

KEYS = Keys()
T0 = 1_767_614_400_000  # epoch ms


class Scripts:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.decide_script = lua.register(r, "flow_decide")
        self.release_script = lua.register(r, "flow_release")
        self.n = 0

    def decide(self, kind: str, now: int, *, period: int = 0, wait: int = 0, limit: int = 0, burst: int = 1,
               max_events: int = 1000, max_bytes: int = 1 << 20) -> dict[str, Any]:
        self.n += 1
        raw = json.dumps({"n": self.n})
        reply = self.decide_script(
            keys=[KEYS.flow_memo(f"m{self.n}"), KEYS.flow_state("rule", "k"), KEYS.flow_due, KEYS.flow_seq,
                  KEYS.results, KEYS.metric("released"), KEYS.run("none")],
            args=[kind, now, 60_000, raw, f"{self.n}-0", 0, "rule", "k", KEYS.flow_hold_prefix, period, wait, limit,
                  burst, max_events, max_bytes])
        answer = dict(json.loads(reply))
        assert (answer.pop("k"), answer.pop("key")) == (kind, "k")  # what it was, for a later rule-set version
        return answer

    def release(self, now: int) -> int:
        return int(self.release_script(keys=[KEYS.flow_due, KEYS.results, KEYS.metric("released")],
                                       args=[now, 1000, KEYS.flow_hold_prefix]))


@pytest.mark.parametrize("seed", range(6))
def test_throttle_script_agrees_with_gcra(r: redis.Redis, seed: int) -> None:
    rng = random.Random(seed)
    limit, period, burst = rng.randint(1, 5), rng.choice([1000, 3000, 7000]), rng.randint(1, 4)
    scripts = Scripts(r)
    tat = last = None
    held: list[int] = []  # due ms of the held events not released yet
    now = T0
    for _ in range(60):
        now += rng.choice([0, 0, 1, 50, 400, 2500])
        if rng.random() < 0.3:
            assert scripts.release(now) == sum(1 for due in held if due <= now)
            held = [due for due in held if due > now]
        expected = throttle(tat, last, len(held), now, limit=limit, period_ms=period, burst=burst)
        tat, last = expected.tat_us, expected.start_us
        answer = scripts.decide("throttle", now, period=period, limit=limit, burst=burst)
        if expected.held:
            held.append(expected.due_ms)
            assert answer["a"] == "delay" and answer["due"] == expected.due_ms
        else:
            assert answer == {"a": "start"}
    released = scripts.release(now + 10**9)
    assert released == len(held)
    ids = [json.loads(fields[b"h"])["due_ms"] for _, fields in r.xrange(KEYS.results)]
    assert ids == sorted(ids), "released in due order"


@pytest.mark.parametrize("seed", range(6))
def test_rate_limit_script_agrees_with_the_window(r: redis.Redis, seed: int) -> None:
    rng = random.Random(seed)
    limit, period = rng.randint(1, 4), rng.choice([1000, 5000])
    scripts = Scripts(r)
    admitted: list[int] = []
    now = T0
    for _ in range(80):
        now += rng.choice([0, 1, 100, 999, 1000, 3000])
        expected = window_admits(admitted, now, limit=limit, period_ms=period)
        answer = scripts.decide("rate_limit", now, period=period, limit=limit)
        assert answer["a"] == ("start" if expected else "drop")
        if expected:
            admitted = [now, *admitted][:limit]


@pytest.mark.parametrize("seed", range(4))
def test_debounce_script_agrees_with_its_due_times(r: redis.Redis, seed: int) -> None:
    rng = random.Random(seed)
    period, wait = rng.choice([1000, 4000]), rng.choice([0, 6000, 9000])
    scripts = Scripts(r)
    now, first, due, hold = T0, None, None, None
    for _ in range(60):
        now += rng.choice([0, 200, 900, 3000, 5000])
        if due is not None and due <= now:
            assert scripts.release(now) == 1
            first = due = None
        expected_first = now if first is None else first
        expected_due, why = debounce_due(expected_first, now, period_ms=period, max_wait_ms=wait)
        answer = scripts.decide("debounce", now, period=period, wait=wait)
        assert (answer["due"], answer["why"]) == (expected_due, why)
        if first is None:
            assert answer["hold"] != hold and answer["n"] == 1
        first, due, hold = expected_first, expected_due, answer["hold"]


def test_a_hold_at_its_bound_is_released_at_once_and_the_next_event_opens_another(r: redis.Redis) -> None:
    scripts = Scripts(r)
    answers = [scripts.decide("debounce", T0, period=1000, max_events=3) for _ in range(4)]
    assert [a["n"] for a in answers] == [1, 2, 3, 1]
    assert [a["released"] for a in answers] == [False, False, True, False]
    assert answers[3]["hold"] != answers[0]["hold"]
    (_, fields), = r.xrange(KEYS.results)
    meta = json.loads(fields[b"h"])
    assert meta["reason"] == "bound" and len(meta["entries"]) == 3
    assert json.loads(fields[b"e"]) == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_the_memo_answers_a_second_call_without_counting_it(r: redis.Redis) -> None:
    scripts = Scripts(r)
    args = ["batch", T0, 60_000, '{"big": 12345678901234567890}', "1-0", 0, "rule", "k", KEYS.flow_hold_prefix, 0,
            5000, 2, 1, 1000, 1 << 20]
    keys = [KEYS.flow_memo("same"), KEYS.flow_state("rule", "k"), KEYS.flow_due, KEYS.flow_seq, KEYS.results,
            KEYS.metric("released"), KEYS.run("none")]
    first = scripts.decide_script(keys=keys, args=args)
    assert scripts.decide_script(keys=keys, args=args) == first
    assert r.llen(KEYS.flow_hold_prefix + json.loads(first)["hold"] + ":events") == 1
    scripts.release(T0 + 5000)
    (_, fields), = r.xrange(KEYS.results)
    assert fields[b"e"] == b'[{"big": 12345678901234567890}]', "events go out exactly as stored"
