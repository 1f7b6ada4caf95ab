"""Fixtures for every tier. Redis is always a real redis-server that the tests start themselves."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from orchestrator.settings import Settings

from .helpers import EXAMPLES, RedisServer


@pytest.fixture(autouse=True)
def _clean_orch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees ORCH_* variables from the shell that ran it."""
    for name in list(os.environ):
        if name.startswith("ORCH_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's own Redis, emptied for this test (it holds nothing but what the tests put there)."""
    client = redis_server.client()
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, project=EXAMPLES)
