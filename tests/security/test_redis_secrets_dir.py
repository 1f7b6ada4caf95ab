"""`orch redis-acl --secrets-dir`: the Redis secrets of a deployment (deploy/compose/compose.yaml) as files.

A real redis-server loads the users.acl it writes; every role connects as its ACL user with the password
from its own redis-password-<role> file (ORCH_REDIS_PASSWORD_FILE), and a client without credentials can
do nothing. The aclfile holds only password hashes.
"""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from orchestrator.cli.main import cli
from orchestrator.connection import connect
from orchestrator.errors import RedisUnavailableError
from orchestrator.settings import Settings

from ..helpers import find_redis_binary, free_port, wait_for

ROLES = ("api", "engine", "worker", "triggers")


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    out = tmp_path / "secrets"
    result = CliRunner().invoke(cli, ["redis-acl", "--secrets-dir", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def acl_server(secrets_dir: Path, tmp_path: Path) -> Iterator[int]:
    binary, _ = find_redis_binary()
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--aclfile", str(secrets_dir / "users.acl")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    anonymous = redis.Redis(port=port)
    wait_for(lambda: _answers(anonymous), 10, "redis-server to start")
    yield port
    process.kill()
    process.wait()


def _answers(client: redis.Redis) -> bool:
    try:
        client.ping()
    except redis.AuthenticationError:
        return True  # it answers, and asks for credentials
    except redis.ConnectionError:
        return False
    return True


def test_the_files_and_their_modes(secrets_dir: Path) -> None:
    assert sorted(p.name for p in secrets_dir.iterdir()) == sorted(
        ["users.acl", *(f"redis-password-{role}" for role in ROLES)])
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    acl = (secrets_dir / "users.acl").read_text()
    for role in ROLES:
        password = (secrets_dir / f"redis-password-{role}").read_text().strip()
        assert len(password) >= 32 and password not in acl
        assert stat.S_IMODE((secrets_dir / f"redis-password-{role}").stat().st_mode) == 0o644
    assert acl.splitlines()[0].startswith("user default off")


def test_existing_secrets_are_never_overwritten(secrets_dir: Path) -> None:
    before = (secrets_dir / "redis-password-engine").read_text()
    result = CliRunner().invoke(cli, ["redis-acl", "--secrets-dir", str(secrets_dir)])
    assert result.exit_code != 0 and "already holds" in result.output
    assert (secrets_dir / "redis-password-engine").read_text() == before


def test_each_role_connects_with_its_password_file_and_no_one_else_gets_in(
        secrets_dir: Path, acl_server: int, tmp_path: Path) -> None:
    for role in ROLES:
        settings = Settings(redis_url=f"redis://orch-{role}@127.0.0.1:{acl_server}/0", project=tmp_path,
                            redis_password_file=secrets_dir / f"redis-password-{role}")
        client = connect(settings)  # the server check runs INFO as this user
        assert client.acl_whoami() in (f"orch-{role}", f"orch-{role}".encode())
        client.close()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=acl_server).get("orch:runs")
    wrong = Settings(redis_url=f"redis://orch-api@127.0.0.1:{acl_server}/0", project=tmp_path,
                     redis_password_file=secrets_dir / "redis-password-engine")
    with pytest.raises(RedisUnavailableError, match="invalid username-password"):
        connect(wrong)


def test_a_directory_holding_other_files_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    shared = tmp_path / "compose"
    shared.mkdir(mode=0o755)
    (shared / "compose.yaml").write_text("services: {}\n")
    result = CliRunner().invoke(cli, ["redis-acl", "--secrets-dir", str(shared)])
    assert result.exit_code != 0 and "not empty" in result.output
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755 and [p.name for p in shared.iterdir()] == ["compose.yaml"]
