"""The server check against real redis-servers: the eviction warning reads `INFO memory`, which an ACL user
without CONFIG (every `orch redis-acl` role) may run."""

from __future__ import annotations

import logging

import pytest
import redis

from orchestrator.connection import check_server
from orchestrator.redis_acl import acl_for

from ..helpers import RedisServer


@pytest.mark.parametrize(("policy", "warned"), [("allkeys-lru", True), ("noeviction", False)])
def test_the_eviction_policy_is_read_from_info(policy: str, warned: bool, caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer("--maxmemory-policy", policy)
    try:
        client = server.client()
        with caplog.at_level(logging.WARNING):
            assert check_server(client) >= (6, 2)
        client.close()
    finally:
        server.stop()
    assert ("maxmemory-policy is allkeys-lru" in caplog.text) is warned


def test_a_role_user_passes_the_check_and_cannot_read_the_config(caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer("--maxmemory-policy", "allkeys-lru")
    try:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "orch-api", "on", ">pw", *acl_for("api").split())
        user = redis.Redis.from_url(server.url_for("orch-api", "pw"))
        with caplog.at_level(logging.WARNING):
            check_server(user)
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.config_get("masterauth")
        user.close()
        admin.close()
    finally:
        server.stop()
    assert "maxmemory-policy is allkeys-lru" in caplog.text
