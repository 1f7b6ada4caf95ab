"""Riding out Redis trouble: one backoff, and one way for a long-running loop to survive what Redis says.

Every loop that works against Redis (the engine, workers and their idle waiters, cron, file watches)
survives a Redis that is away or refuses for a while, instead of exiting:

    connection   the connection was lost or refused           timeout   a command timed out
    oom          OOM: maxmemory reached under noeviction      readonly  READONLY: a replica after a failover
    busy         BUSY: a long script is running               loading   LOADING: Redis is loading its data
    noperm       NOPERM: an ACL forbids a command or key      contention the engine could not commit a batch
    noreplicas   NOREPLICAS: min-replicas-to-write unmet      auth      a wrong user name or password
    misconf      MISCONF: Redis cannot persist (a full disk)  other     any other error reply

`RideOut.failed(exc)` logs (a warning when trouble starts, then at each retry), counts the error in
`orch_redis_errors_total{role,error}` and returns how long to wait: exponential backoff with jitter. The
counts are kept in memory and written by `RideOut.ok(client)` once Redis takes writes again (an OOM or
READONLY Redis would refuse the increment itself), which also says that Redis is back. Exceptions that are
not Redis's (bugs) are not caught here: they end the process, and its supervisor restarts it.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

import redis

from .metrics import REDIS_ERRORS, MetricsBatch
from .state.keys import Keys

__all__ = ["PASSING", "Backoff", "RideOut", "classify"]

# redis-py turns most error prefixes into classes (and drops the prefix from the message); order matters:
# BusyLoadingError is a ConnectionError, and comes first.
_CLASS_LABELS: tuple[tuple[type[BaseException], str], ...] = (
    (redis.WatchError, "contention"), (redis.TimeoutError, "timeout"),
    (redis.AuthenticationError, "auth"),  # a ConnectionError, but a wrong password does not pass
    (redis.exceptions.BusyLoadingError, "loading"), (redis.exceptions.MasterDownError, "connection"),
    (redis.ConnectionError, "connection"), (redis.exceptions.OutOfMemoryError, "oom"),
    (redis.exceptions.ReadOnlyError, "readonly"), (redis.exceptions.NoPermissionError, "noperm"),
    (redis.exceptions.TryAgainError, "busy"))
# Replies redis-py leaves as a plain ResponseError keep their prefix in the message.
_REPLY_LABELS = (("OOM", "oom"), ("READONLY", "readonly"), ("BUSY", "busy"), ("LOADING", "loading"),
                 ("NOPERM", "noperm"), ("MASTERDOWN", "connection"), ("TRYAGAIN", "busy"),
                 ("NOREPLICAS", "noreplicas"), ("MISCONF", "misconf"))
# What waiting fixes: a Redis away, loading, failing over or briefly overloaded (not an ACL or a bug).
PASSING = frozenset({"connection", "timeout", "loading", "readonly", "busy", "oom", "noreplicas", "misconf",
                     "contention"})


def classify(exc: BaseException) -> str:
    """The `error` label of a Redis error (see the module docstring)."""
    label = next((label for cls, label in _CLASS_LABELS if isinstance(exc, cls)), None)
    if label:
        return label
    text = str(exc).rsplit("caused error: ", 1)[-1].lstrip("-").upper()  # past a pipeline's annotation
    return next((label for prefix, label in _REPLY_LABELS if text.startswith(prefix)), "other")


@dataclass
class Backoff:
    """Exponential delays from `initial_s` to `max_s`, each shortened by up to `jitter` (a fraction)."""

    initial_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2
    _next_s: float = field(default=0.0, init=False)

    def next_s(self) -> float:
        """The delay before the next attempt; each call makes the following one longer."""
        delay = self._next_s or self.initial_s
        self._next_s = min(self.max_s, delay * self.factor)
        return delay * random.uniform(1.0 - self.jitter, 1.0)

    def reset(self) -> None:
        self._next_s = 0.0

    @property
    def backing_off(self) -> bool:
        return self._next_s > 0.0


@dataclass
class RideOut:
    """What one loop (`role`: engine, worker, cron, watch, ...) does when Redis fails it."""

    role: str
    log: logging.Logger
    keys: Keys
    backoff: Backoff = field(default_factory=Backoff)
    repeat_warnings: bool = True  # False: only the first failure of an episode is a warning, the rest DEBUG
    _pending: MetricsBatch = field(default_factory=MetricsBatch, init=False)
    _failures: int = field(default=0, init=False)

    def failed(self, exc: redis.RedisError) -> float:
        """Log and count `exc`; the seconds to wait before trying again."""
        label = classify(exc)
        self._pending.inc(REDIS_ERRORS, self.role, label)
        self._failures += 1
        delay = self.backoff.next_s()
        first = "" if self._failures > 1 else " (riding it out)"
        level = logging.WARNING if self.repeat_warnings or self._failures == 1 else logging.DEBUG
        self.log.log(level, "%s: Redis error (%s: %s)%s; retrying in %.1fs", self.role, label,
                     str(exc).strip() or type(exc).__name__, first, delay)
        return delay

    def ok(self, client: Any) -> None:
        """A round went well: end the episode (if any) and write the errors counted meanwhile."""
        if not self._failures and not self._pending:
            return
        if self._failures:
            self.log.info("%s: Redis is back after %d failed attempt(s)", self.role, self._failures)
            self._failures = 0
            self.backoff.reset()
        batch, self._pending = self._pending, MetricsBatch()
        try:
            pipe = client.pipeline(transaction=False)
            batch.flush(pipe, self.keys)
            pipe.execute()
        except redis.RedisError:
            self._pending.merge(batch)  # written with the next good round
