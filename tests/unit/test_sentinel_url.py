"""The redis+sentinel:// URL form: sentinels, service, db, credentials for each side, TLS, and its errors."""

from __future__ import annotations

import pytest
import redis.asyncio.sentinel
import redis.sentinel

from orchestrator.api.app import _state
from orchestrator.connection import async_client_from_url, client_from_url, redact_url
from orchestrator.errors import ConfigError
from orchestrator.sentinel import clone_sentinel_pool, is_sentinel_url, parse_sentinel_url
from orchestrator.settings import Settings


def test_hosts_service_db_and_the_default_port() -> None:
    spec = parse_sentinel_url("redis+sentinel://s1:26380,s2,10.0.0.3:5000/mymaster/2")
    assert spec.sentinels == (("s1", 26380), ("s2", 26379), ("10.0.0.3", 5000))
    assert spec.service == "mymaster"
    assert spec.node_kwargs["db"] == 2
    assert "ssl" not in spec.node_kwargs and spec.sentinel_kwargs == {}


def test_the_db_defaults_to_0() -> None:
    assert parse_sentinel_url("redis+sentinel://s1/svc").node_kwargs["db"] == 0


def test_user_and_password_go_to_the_data_nodes_sentinel_ones_to_the_sentinels() -> None:
    spec = parse_sentinel_url("redis+sentinel://orch-worker:p%40ss@s1:26379/svc/0"
                              "?sentinel_username=watch&sentinel_password=sp&socket_timeout=5")
    assert (spec.node_kwargs["username"], spec.node_kwargs["password"]) == ("orch-worker", "p@ss")
    assert spec.node_kwargs["socket_timeout"] == 5.0
    assert spec.sentinel_kwargs == {"username": "watch", "password": "sp", "socket_timeout": 5.0}
    assert "sentinel_password" not in spec.node_kwargs


def test_tls_applies_to_both_sides_with_one_ca() -> None:
    spec = parse_sentinel_url("rediss+sentinel://s1:26379/svc/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required")
    assert spec.node_kwargs["ssl"] is True and spec.node_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    assert spec.sentinel_kwargs["ssl"] is True and spec.sentinel_kwargs["ssl_ca_certs"] == "/etc/ca.pem"


@pytest.mark.parametrize("url", ["redis+sentinel://s1:26379", "redis+sentinel://s1:26379/svc/0/extra",
                                 "redis+sentinel://s1:notaport/svc", "redis+sentinel://,/svc",
                                 "redis+sentinel://s1/svc/notadb", "redis://s1/0"])
def test_malformed_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_sentinel_url(url)


def test_which_urls_are_sentinel_urls() -> None:
    assert is_sentinel_url("redis+sentinel://s/m") and is_sentinel_url("REDISS+SENTINEL://s/m")
    assert not is_sentinel_url("redis://h:6379/0") and not is_sentinel_url("unix:///tmp/r.sock")


def test_a_client_of_the_primary_and_a_clone_of_it_need_no_io() -> None:
    client = client_from_url("redis+sentinel://u:pw@s1:26379,s2:26379/svc/3", health_check_interval=30)
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool) and pool.service_name == "svc" and pool.is_master
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["health_check_interval"] == 30
    clone = clone_sentinel_pool(pool, socket_timeout=5)
    assert clone is not pool and clone.sentinel_manager is pool.sentinel_manager
    assert clone.connection_kwargs["socket_timeout"] == 5 and clone.connection_kwargs["password"] == "pw"
    assert clone.connection_kwargs["connection_pool"] is not pool.connection_kwargs["connection_pool"]


def test_both_passwords_are_redacted() -> None:
    shown = redact_url("redis+sentinel://orch:secret@s1:26379,s2:26379/svc/0?sentinel_password=other")
    assert "secret" not in shown and "other" not in shown
    assert shown.startswith("redis+sentinel://orch:***@s1:26379,s2:26379/svc/0")


def test_the_api_and_async_clients_use_the_sentinels_too() -> None:
    state = _state(Settings(redis_url="redis+sentinel://127.0.0.1:1/svc/0"), None)
    assert isinstance(state.redis.connection_pool, redis.sentinel.SentinelConnectionPool)
    assert isinstance(state.aredis.connection_pool, redis.asyncio.sentinel.SentinelConnectionPool)
    pool = async_client_from_url("rediss+sentinel://s1/svc/1?ssl_ca_certs=/ca.pem").connection_pool
    assert isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool) and pool.connection_kwargs["db"] == 1
    assert issubclass(pool.connection_class, redis.asyncio.sentinel.SentinelManagedSSLConnection)


def test_the_health_probe_client_finds_the_primary_through_the_sentinels() -> None:
    from orchestrator.health import probe_client

    probe = probe_client(client_from_url("redis+sentinel://h1:26379,h2:26379/mymaster/0"), 2.0)

    assert isinstance(probe.connection_pool, redis.sentinel.SentinelConnectionPool)
    assert probe.connection_pool.connection_kwargs["socket_timeout"] == 2.0


def test_a_password_with_a_slash_is_redacted_whole() -> None:
    for url in ("redis+sentinel://u:SE/CRET@h1/svc", "redis://:p?x#y@h:6379/0"):
        assert "SE/CRET" not in redact_url(url) and "p?x#y" not in redact_url(url) and ":***@" in redact_url(url)
