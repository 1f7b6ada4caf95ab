"""The one backoff and the labels of `orch_redis_errors_total{role,error}`.

Errors are built by redis-py's own reply parser from the replies Redis sends, so the labels follow what a
client really raises (redis-py turns most prefixes into classes and drops the prefix from the message), and
errors inside a pipeline keep their label although redis-py rewrites their message.
"""

from __future__ import annotations

import logging

import pytest
import redis
from redis._parsers.base import BaseParser

from orchestrator.backoff import PASSING, Backoff, RideOut, classify
from orchestrator.state.keys import Keys

REPLIES = {
    "OOM command not allowed when used memory > 'maxmemory'.": "oom",
    "READONLY You can't write against a read only replica.": "readonly",
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT.": "busy",
    "LOADING Redis is loading the dataset in memory": "loading",
    "NOPERM User worker has no permissions to run the 'flushall' command": "noperm",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.": "connection",
    "TRYAGAIN Multiple keys request during rehashing of slot": "busy",
    "NOREPLICAS Not enough good replicas to write.": "noreplicas",
    "MISCONF Redis is configured to save RDB snapshots, but it is currently not able to persist on disk.": "misconf",
    "WRONGPASS invalid username-password pair or user is disabled.": "auth",
    "ERR unknown command 'FOO'": "other",
    "WRONGTYPE Operation against a key holding the wrong kind of value": "other",
}


@pytest.mark.parametrize(("reply", "label"), REPLIES.items())
def test_each_reply_gets_its_label(reply: str, label: str) -> None:
    assert classify(BaseParser.parse_error(reply)) == label


@pytest.mark.parametrize(("reply", "label"), REPLIES.items())
def test_the_label_survives_redis_py_annotating_a_pipeline_error(reply: str, label: str) -> None:
    exc = BaseParser.parse_error(reply)
    exc.args = (f"Command # 1 (HSET orch:run:x meta ...) of pipeline caused error: {exc.args[0]}",)
    assert classify(exc) == label


@pytest.mark.parametrize(("exc", "label"), [
    (redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."), "connection"),
    (redis.TimeoutError("Timeout reading from socket"), "timeout"),
    (redis.WatchError("Watched variable changed."), "contention"),
])
def test_client_side_errors(exc: redis.RedisError, label: str) -> None:
    assert classify(exc) == label


def test_what_waiting_fixes_and_what_it_does_not() -> None:
    """Start-up waits ride out only PASSING errors: a wrong password or an ACL is for the operator to fix."""
    assert {"connection", "timeout", "loading", "readonly", "noreplicas", "misconf"} <= PASSING
    assert not {"auth", "noperm", "other"} & PASSING


def test_backoff_grows_to_its_ceiling_with_jitter_and_resets() -> None:
    backoff = Backoff(initial_s=0.5, max_s=4.0, jitter=0.2)
    delays = [backoff.next_s() for _ in range(6)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(c * 0.8 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert backoff.backing_off
    backoff.reset()
    assert not backoff.backing_off and backoff.next_s() <= 0.5


def test_ride_out_logs_once_as_trouble_starts_then_each_retry(caplog: pytest.LogCaptureFixture) -> None:
    ride = RideOut("engine", logging.getLogger("t"), Keys())
    with caplog.at_level(logging.WARNING, logger="t"):
        ride.failed(BaseParser.parse_error("OOM command not allowed"))
        ride.failed(BaseParser.parse_error("OOM command not allowed"))
    assert [r.getMessage().count("riding it out") for r in caplog.records] == [1, 0]
    assert all("engine: Redis error (oom:" in r.getMessage() for r in caplog.records)


def test_a_ride_out_that_does_not_repeat_warns_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    ride = RideOut("heartbeat", logging.getLogger("t"), Keys(), repeat_warnings=False)
    with caplog.at_level(logging.DEBUG, logger="t"):
        for _ in range(3):
            ride.failed(BaseParser.parse_error("BUSY Redis is busy running a script."))
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
