"""Refusing a Redis that is too old, before anything is written to it."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.connection import check_server, parse_version
from orchestrator.errors import RedisUnavailableError


class _Answers:
    """Stands in for a server's INFO and CONFIG replies (what check_server reads, nothing more)."""

    def __init__(self, version: str, policy: bytes = b"noeviction") -> None:
        self.version, self.policy = version, policy

    def info(self, section: str) -> dict[str, Any]:
        return {"redis_version": self.version}

    def config_get(self, name: str) -> dict[bytes, bytes]:
        return {b"maxmemory-policy": self.policy}


@pytest.mark.parametrize(("text", "expected"), [("7.0.15", (7, 0, 15)), ("6.2.14", (6, 2, 14)),
                                                ("255.255.255", (255, 255, 255)), ("7.2.4-rc1", (7, 2, 4))])
def test_versions_parse(text: str, expected: tuple[int, ...]) -> None:
    assert parse_version(text) == expected


def test_a_redis_older_than_6_2_is_refused_with_what_to_do() -> None:
    with pytest.raises(RedisUnavailableError, match=r"Redis 6\.0\.16 at redis://h:1/0 is too old: orch needs Redis >= 6\.2"):
        check_server(_Answers("6.0.16"), "redis://h:1/0")  # type: ignore[arg-type]


def test_6_2_and_later_are_accepted() -> None:
    assert check_server(_Answers("6.2.0"), "redis://h:1/0") == (6, 2, 0)  # type: ignore[arg-type]


def test_an_evicting_server_is_accepted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    check_server(_Answers("7.0.15", b"allkeys-lru"), "redis://h:1/0")  # type: ignore[arg-type]
    assert "maxmemory-policy is allkeys-lru" in caplog.text
