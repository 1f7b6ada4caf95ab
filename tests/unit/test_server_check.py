"""Refusing a Redis that is too old, before anything is written to it: `server_check` fed replies, no server."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from orchestrator.connection import Command, parse_version, server_check
from orchestrator.errors import RedisUnavailableError

URL = "redis://:secret@h:1/0"
INFO = ("INFO", "server")
POLICY = ("INFO", "memory")


def _check(*replies: Any, asked: list[Command] | None = None) -> tuple[int, ...]:
    """Run the check, answering its commands with `replies` in turn; `asked` collects the commands."""
    asked = [] if asked is None else asked
    steps = server_check(URL)
    asked.append(next(steps))
    try:
        for reply in replies:
            asked.append(steps.send(reply))
    except StopIteration as done:
        version: tuple[int, ...] = done.value
        return version
    raise AssertionError(f"the check still asks for {asked[-1]} after {len(replies)} replies")


def _info(version: str) -> dict[str, Any]:
    return {"redis_version": version, "redis_mode": "standalone"}


@pytest.mark.parametrize(("text", "expected"), [("7.0.15", (7, 0, 15)), ("6.2.14", (6, 2, 14)),
                                                ("255.255.255", (255, 255, 255)), ("7.2.4-rc1", (7, 2, 4))])
def test_versions_parse(text: str, expected: tuple[int, ...]) -> None:
    assert parse_version(text) == expected


def test_the_check_asks_for_the_version_then_the_eviction_policy(caplog: pytest.LogCaptureFixture) -> None:
    asked: list[Command] = []
    assert _check(_info("6.2.0"), {"maxmemory_policy": "noeviction"}, asked=asked) == (6, 2, 0)
    assert asked == [INFO, POLICY]
    assert "maxmemory-policy" not in caplog.text


def test_a_redis_older_than_6_2_is_refused_with_what_to_do_before_anything_else() -> None:
    asked: list[Command] = []
    with pytest.raises(RedisUnavailableError,
                       match=r"Redis 6\.0\.16 at redis://:\*\*\*@h:1/0 is too old: orch needs Redis >= 6\.2"):
        _check(_info("6.0.16"), asked=asked)
    assert asked == [INFO]


def test_a_redis_that_does_not_answer_is_named_without_its_password() -> None:
    refused = redis.ConnectionError("Error 111 connecting to h:1. Connection refused.")
    asked: list[Command] = []
    with pytest.raises(RedisUnavailableError) as caught:
        _check(refused, asked=asked)
    assert str(caught.value) == ("cannot reach Redis at redis://:***@h:1/0: Error 111 connecting to h:1. "
                                 "Connection refused. Is it running? Check ORCH_REDIS_URL, or start `orch dev`.")
    assert caught.value.__cause__ is refused and asked == [INFO]


@pytest.mark.parametrize("policy", [{"maxmemory_policy": "allkeys-lru"}, {b"maxmemory_policy": b"allkeys-lru"}])
def test_an_evicting_server_is_accepted_with_a_warning(policy: dict[Any, Any],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    assert _check(_info("7.0.15"), policy) == (7, 0, 15)
    assert "maxmemory-policy is allkeys-lru" in caplog.text


def test_a_redis_that_hides_the_memory_section_is_accepted_without_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    assert _check(_info("7.2.4"), redis.ResponseError("unknown subcommand 'memory'")) == (7, 2, 4)
    assert "maxmemory-policy" not in caplog.text


def test_a_connection_lost_while_reading_the_policy_is_not_taken_for_managed_redis() -> None:
    lost = redis.ConnectionError("Connection closed by server.")
    with pytest.raises(redis.ConnectionError) as caught:
        _check(_info("7.2.4"), lost)
    assert caught.value is lost
