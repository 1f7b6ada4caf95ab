"""ORCH_REDIS_PASSWORD_FILE: the Redis password from a mounted secret file (deploy/compose/compose.yaml)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import redis

from orchestrator.connection import connect, redact_url, resolve_redis_url, with_password
from orchestrator.errors import ConfigError, RedisUnavailableError
from orchestrator.settings import Settings


def test_the_password_is_put_into_the_url_quoted() -> None:
    url = with_password("redis://orch-engine@redis:6379/0", "p@ss:w/rd")
    assert redis.connection.parse_url(url) == {"username": "orch-engine", "password": "p@ss:w/rd",
                                               "host": "redis", "port": 6379, "db": 0}
    assert with_password("rediss://h:6380/1?ssl_cert_reqs=required", "x") == "rediss://:x@h:6380/1?ssl_cert_reqs=required"
    assert "p@ss" not in redact_url(url)


@pytest.mark.parametrize("url", ["redis://u:pw@h:6379/0", "redis://:pw@h:6379/0", "redis://h:6379/0?password=pw"])
def test_a_url_with_its_own_password_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="names a password"):
        with_password(url, "other")


def test_a_file_without_a_url_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("secret\n")
    with pytest.raises(ConfigError, match="ORCH_REDIS_URL is not"):
        resolve_redis_url(Settings(redis_password_file=tmp_path / "pw", project=tmp_path))


@pytest.mark.parametrize("text", ["", "\n", "one\ntwo\n"])
def test_a_file_must_hold_one_password(tmp_path: Path, text: str) -> None:
    (tmp_path / "pw").write_text(text)
    settings = Settings(redis_url="redis://h:6379/0", redis_password_file=tmp_path / "pw", project=tmp_path)
    with pytest.raises(ConfigError, match="alone on one line"):
        resolve_redis_url(settings)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    settings = Settings(redis_url="redis://h:6379/0", redis_password_file=tmp_path / "nope", project=tmp_path)
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope'}: cannot read it"):
        resolve_redis_url(settings)


def test_an_acl_user_connects_with_the_password_from_its_file(
        r: redis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password = secrets.token_urlsafe(24)
    r.acl_setuser("orch-test", enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    try:
        (tmp_path / "redis_password").write_text(password + "\n")
        user_url = redis_url.replace("redis://", "redis://orch-test@", 1)
        monkeypatch.setenv("ORCH_REDIS_URL", user_url)
        monkeypatch.setenv("ORCH_REDIS_PASSWORD_FILE", str(tmp_path / "redis_password"))
        client = connect(Settings(project=tmp_path))
        assert client.acl_whoami() in ("orch-test", b"orch-test")
        client.close()
        (tmp_path / "redis_password").write_text("wrong\n")
        with pytest.raises(RedisUnavailableError, match="invalid username-password"):
            connect(Settings(project=tmp_path))
    finally:
        r.acl_deluser("orch-test")
