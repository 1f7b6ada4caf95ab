"""Liveness and readiness of the long-running roles (engine, worker, worker pool, triggers): one check.

What each answers (what a Kubernetes probe should act on):

    live    every loop of the process progressed recently: its last iteration is younger than
            max(ORCH_HEALTH_STUCK_AFTER_S, 3 x its period), plus, for a worker running a task, the time
            that task may still take (its timeout). A stuck loop fails it: restarting the process helps.
            Redis is NOT looked at: the loops ride out a Redis outage by design (backoff.RideOut) and
            keep iterating, and restarting every pod would not bring Redis back (it would only lose
            their warm state and add a thundering herd when it returns).
    ready   live, and Redis answers PING within ORCH_HEALTH_REDIS_TIMEOUT_S, and the role's own
            conditions hold: an engine is on the active rule-set version (not "behind", engine/reload.py),
            a worker's heartbeat is accepted (not lapsed, executors/heartbeat.py).

Loops call `tick(name, period_s)` once per iteration (a process-local timestamp, no I/O); the roles'
commands register their readiness conditions with `require(name, check)`. `state()` reads both, and
`liveness` / `readiness` (pure, clock passed in) judge them. health_http.py serves the verdicts.

A tick passes the fault point `<name>.tick` (faults.py): `ORCH_FAULTPOINT=engine.tick:3:stall` freezes
the engine's loop at its third iteration, which the tests use to make a stuck loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.sentinel import SentinelConnectionPool

from . import faults
from .sentinel import clone_sentinel_pool

__all__ = ["Beat", "Verdict", "liveness", "ping", "readiness", "require", "reset", "state", "tick"]

PERIODS = 3  # a loop silent for this many of its periods (and at least ORCH_HEALTH_STUCK_AFTER_S) is stuck


@dataclass(frozen=True)
class Beat:
    """One loop's last iteration (monotonic seconds), its period, and the extra time it may take now."""

    name: str
    last_s: float
    period_s: float
    extra_s: float = 0.0  # e.g. a worker running a task: what is left of its timeout


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, **self.details}


def liveness(beats: Iterable[Beat], now_s: float, stuck_after_s: float) -> Verdict:
    """Pure: live unless a loop's last iteration is older than it may be."""
    ages, stuck = {}, []
    for beat in beats:
        age_s = max(0.0, now_s - beat.last_s)
        allowed_s = max(stuck_after_s, PERIODS * beat.period_s) + max(0.0, beat.extra_s)
        ages[beat.name] = round(age_s, 3)
        if age_s > allowed_s:
            stuck.append(f"{beat.name} loop stuck: last iteration {age_s:.1f} s ago (allowed {allowed_s:.1f} s)")
    if stuck:
        return Verdict(False, "; ".join(stuck), {"loops_age_s": ages})
    if not ages:
        return Verdict(True, "starting: no loop has run yet", {"loops_age_s": ages})
    return Verdict(True, f"{len(ages)} loop(s) progressing", {"loops_age_s": ages})


def readiness(live: Verdict, redis_error: str | None, problems: dict[str, str | None]) -> Verdict:
    """Pure: ready when live, Redis answered, and no role condition reports a problem."""
    failing = {name: text for name, text in problems.items() if text}
    details = {**live.details, "redis": redis_error or "ok", "conditions": {k: v or "ok" for k, v in problems.items()}}
    if not live.ok:
        return Verdict(False, live.reason, details)
    if redis_error:
        return Verdict(False, f"Redis unreachable: {redis_error}", details)
    if failing:
        return Verdict(False, "; ".join(f"{name}: {text}" for name, text in failing.items()), details)
    return Verdict(True, "ready", details)


# -- the process-local state the loops feed -------------------------------------------------------------------------

_lock = threading.Lock()
_beats: dict[str, tuple[float, float, Callable[[], float] | None]] = {}
_conditions: dict[str, Callable[[], str | None]] = {}


def tick(name: str, period_s: float, extra_s: Callable[[], float] | None = None) -> None:
    """One iteration of the loop `name`, which comes round every `period_s` (more: `extra_s()` now)."""
    faults.hit(f"{name}.tick")
    with _lock:
        _beats[name] = (time.monotonic(), period_s, extra_s)


def require(name: str, check: Callable[[], str | None]) -> None:
    """A readiness condition: `check()` returns what is wrong, or None."""
    with _lock:
        _conditions[name] = check


def reset() -> None:
    """Forget every loop and condition (tests, and a process that starts another role)."""
    with _lock:
        _beats.clear()
        _conditions.clear()


def state() -> tuple[list[Beat], dict[str, str | None]]:
    """The loops' beats and the conditions' answers, read now."""
    with _lock:
        beats = dict(_beats)
        conditions = dict(_conditions)
    out = [Beat(name, last, period, extra() if extra else 0.0) for name, (last, period, extra) in beats.items()]
    answers: dict[str, str | None] = {}
    for name, check in conditions.items():
        try:
            answers[name] = check()
        except Exception as exc:  # noqa: BLE001 - a failing condition is a reason, never a crash of the probe
            answers[name] = f"{type(exc).__name__}: {exc}"
    return out, answers


def ping(client: redis.Redis) -> str | None:
    """PING (the client carries the timeout); the error, or None."""
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return None


def probe_client(client: redis.Redis, timeout_s: float) -> redis.Redis:
    """A client to the same server with its own connections and a short timeout, for PING."""
    pool = client.connection_pool
    short = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s, "retry_on_timeout": False}
    if isinstance(pool, SentinelConnectionPool):  # the primary of a Sentinel service, found the same way
        return redis.Redis(connection_pool=clone_sentinel_pool(pool, **short))
    kwargs = {**pool.connection_kwargs, **short}
    kwargs.pop("retry", None)
    return redis.Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs))
