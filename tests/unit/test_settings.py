"""Settings precedence and units, and where the Redis URL comes from (without connecting to one)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.connection import address_file, read_address_file, redact_url, resolve_redis_url
from orchestrator.errors import RedisUnavailableError
from orchestrator.settings import Settings

# No process has this id: it is above every kernel's pid_max (Linux caps pid_max at 2**22).
DEAD_PID = 2**31 - 1


def write_address(project: Path, url: str, owner_pid: int) -> Path:
    path = project / ".orch" / "redis.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": url, "owner_pid": owner_pid}))
    return path


# -- Settings ----------------------------------------------------------------------------------------


def test_defaults_carry_their_units() -> None:
    settings = Settings()

    assert settings.redis_url is None
    assert settings.key_prefix == "orch" and settings.api_port == 8000
    assert settings.event_max_bytes == 1024 * 1024
    assert settings.event_dedup_window_s == 86400.0
    assert settings.events_retention_s == 7 * 86400.0
    assert settings.engine_block_s == 1.0 and settings.task_timeout_s == 600


def test_the_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_API_PORT", "9001")
    monkeypatch.setenv("ORCH_ENGINE_BLOCK_S", "0.25")
    monkeypatch.setenv("ORCH_REDIS_URL", "redis://env:6379/0")

    settings = Settings()

    assert (settings.api_port, settings.engine_block_s, settings.redis_url) == (9001, 0.25, "redis://env:6379/0")


def test_keyword_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_API_PORT", "9001")
    monkeypatch.setenv("ORCH_KEY_PREFIX", "from-env")

    settings = Settings(api_port=9002)

    assert settings.api_port == 9002
    assert settings.key_prefix == "from-env"


def test_variables_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_PORT", "1234")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")

    settings = Settings()

    assert settings.api_port == 8000 and settings.redis_url is None


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="key_prefix"):
        Settings(key_prefix="has space")
    with pytest.raises(ValidationError, match="event_max_bytes"):
        Settings(event_max_bytes=0)
    monkeypatch.setenv("ORCH_API_PORT", "70000")
    with pytest.raises(ValidationError, match="api_port"):
        Settings()


def test_the_log_level_is_upper_cased(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_LOG_LEVEL", "debug")

    assert Settings().log_level == "DEBUG"


def test_settings_are_frozen() -> None:
    settings = Settings()

    with pytest.raises(ValidationError):
        settings.api_port = 1  # type: ignore[misc]


def test_the_project_and_state_directories_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORCH_PROJECT", "proj")

    settings = Settings()

    assert settings.project_dir == tmp_path.resolve() / "proj"
    assert settings.state_dir == tmp_path.resolve() / "proj" / ".orch"
    assert address_file(settings) == tmp_path.resolve() / "proj" / ".orch" / "redis.json"


# -- resolve_redis_url -------------------------------------------------------------------------------


def test_an_explicit_url_wins(tmp_path: Path) -> None:
    write_address(tmp_path, "redis://127.0.0.1:7000/0", os.getpid())

    assert resolve_redis_url(Settings(redis_url="redis://explicit:6379/1", project=tmp_path)) == \
        "redis://explicit:6379/1"


def test_the_url_of_a_live_orch_dev_is_used(tmp_path: Path) -> None:
    write_address(tmp_path, "redis://127.0.0.1:7000/0", os.getpid())

    assert resolve_redis_url(Settings(project=tmp_path)) == "redis://127.0.0.1:7000/0"


def test_the_address_of_a_dead_orch_dev_is_ignored(tmp_path: Path) -> None:
    path = write_address(tmp_path, "redis://127.0.0.1:7000/0", DEAD_PID)

    assert read_address_file(path) is None
    with pytest.raises(RedisUnavailableError) as caught:
        resolve_redis_url(Settings(project=tmp_path))

    assert "orch dev" in str(caught.value)


def test_without_any_redis_the_error_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(RedisUnavailableError) as caught:
        resolve_redis_url(Settings(project=tmp_path))

    message = str(caught.value)
    assert f"no Redis configured for project {tmp_path.resolve()}" in message
    assert f"`orch dev --project {tmp_path}`" in message
    assert "ORCH_REDIS_URL=" in message


@pytest.mark.parametrize("content", ["not json", json.dumps({"url": "redis://x:1/0"}),
                                     json.dumps({"url": "redis://x:1/0", "owner_pid": "123"})])
def test_an_unreadable_or_ownerless_address_file_is_ignored(tmp_path: Path, content: str) -> None:
    path = tmp_path / ".orch" / "redis.json"
    path.parent.mkdir()
    path.write_text(content)

    assert read_address_file(path) is None


# -- redact_url --------------------------------------------------------------------------------------


def test_redact_url_hides_the_password() -> None:
    assert redact_url("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("rediss://:s3cret@host:6380/2") == "rediss://:***@host:6380/2"
    assert redact_url("redis://user:p@ss@host/0") == "redis://user:***@host/0"


def test_redact_url_leaves_urls_without_credentials_alone() -> None:
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("unix:///tmp/redis.sock") == "unix:///tmp/redis.sock"


def test_redact_url_hides_a_password_given_as_a_query_parameter() -> None:
    # redis-py reads `?password=` as the password, so it is as secret as the one before the @.
    redacted = redact_url("redis://host:6379/0?password=s3cret")

    assert "s3cret" not in redacted
