"""deploy/compose/compose.yaml, checked without a container daemon.

It must be valid under the Compose Specification's JSON schema (the copy vendored in check-jsonschema,
`--builtin-schema vendor.compose-spec`), and every orch command line in it, a service's command or a
healthcheck, must parse as a real `orch` command; every ORCH_* variable must be a setting orch reads.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli.main import cli
from orchestrator.redis_acl import ROLES
from orchestrator.settings import Settings

from .conftest import DEPLOY, tool

COMPOSE = DEPLOY / "compose" / "compose.yaml"
DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved
    return loaded


def interpolate(text: str) -> str:
    """`${VAR:-default}` -> default, as Compose does with VAR unset."""
    return DEFAULT.sub(lambda m: m.group(2), text)


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_valid_under_the_compose_specification_schema() -> None:
    done = check_jsonschema(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("good", "bad"), [("healthcheck:", "healthchek:"),
                                           ("\nsecrets:\n", "\nsecret:\n"),
                                           ("cap_drop: [ALL]", "cap_drop: {ALL: true}")])
def test_the_schema_check_refuses_a_broken_file(tmp_path: Path, good: str, bad: str) -> None:
    """The control: a misspelt service key, a misspelt top-level key, a map where a list belongs."""
    (tmp_path / "compose.yaml").write_text(COMPOSE.read_text().replace(good, bad, 1))
    done = check_jsonschema(tmp_path / "compose.yaml")
    assert done.returncode != 0, f"{bad!r} passed"


def orch_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if "orch" in str(s.get("image", ""))}


def orch_command_lines() -> list[tuple[str, list[str]]]:
    """(where, argv after `orch`) of every service command and every `orch ...` healthcheck."""
    lines = []
    for name, service in orch_services().items():
        lines.append((f"{name}.command", [interpolate(a) for a in service["command"]]))
        test = service["healthcheck"]["test"]
        if test[:2] == ["CMD", "orch"]:
            lines.append((f"{name}.healthcheck", test[2:]))
    return lines


def test_the_stack_has_every_role_with_healthchecks_and_restarts() -> None:
    services = compose()["services"]
    commands = {name: " ".join(s.get("command", [])) for name, s in services.items()}
    assert commands["api-hooks"].startswith("api --role hooks")
    assert commands["api-operator"].startswith("api --role operator")
    assert services["engine"]["deploy"]["replicas"] == 2 and services["triggers"]["deploy"]["replicas"] == 2
    assert commands["worker"].startswith("worker --concurrency")
    redis = " ".join(services["redis"]["command"])
    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction", "--aclfile"):
        assert flag in redis
    assert re.fullmatch(r"redis:7\.\d+\.\d+", services["redis"]["image"]), "Redis pinned by its full tag"
    for name, service in services.items():
        assert service["restart"] == "unless-stopped" and service["healthcheck"]["test"], name


@pytest.mark.parametrize(("where", "argv"), orch_command_lines(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_orch_command_line_is_a_real_orch_command(where: str, argv: list[str]) -> None:
    if argv[0] not in cli.commands:  # type: ignore[attr-defined]
        pytest.skip(f"SKIPPED LOUDLY: `orch {argv[0]}` ({where}) is not a command on this branch yet")
    result = CliRunner().invoke(cli, [*argv, "--help"])
    assert result.exit_code == 0, result.output
    command: click.Command = cli
    ctx = click.Context(cli, info_name="orch")
    rest = list(argv)
    while isinstance(command, click.Group):
        name, rest = rest[0], rest[1:]
        found = command.get_command(ctx, name)
        assert found is not None, f"{where}: no command {name!r}"
        command = found
    command.make_context(argv[0], rest, parent=ctx)  # parses and converts every option's value


def test_every_orch_variable_is_a_setting_and_each_role_uses_its_own_acl_user() -> None:
    settings = {f"ORCH_{name.upper()}" for name in Settings.model_fields}
    declared = set(compose()["secrets"])
    for name, service in orch_services().items():
        env = service["environment"]
        unknown = {k for k in env if k.startswith("ORCH_")} - settings
        assert not unknown, f"{name}: {unknown} are not orch settings (see orchestrator/settings.py)"
        user = re.fullmatch(r"redis://orch-(\w+)@redis:6379/0", env["ORCH_REDIS_URL"])
        assert user and user.group(1) in ROLES, env["ORCH_REDIS_URL"]
        secret = env["ORCH_REDIS_PASSWORD_FILE"].removeprefix("/run/secrets/")
        assert secret == f"redis_password_{user.group(1)}" and secret in service["secrets"] and secret in declared
    assert "redis_users" in compose()["services"]["redis"]["secrets"]


def test_the_secrets_are_the_files_orch_redis_acl_writes() -> None:
    files = {Path(s["file"]).name for s in compose()["secrets"].values()}
    assert files == {"users.acl", *(f"redis-password-{role}" for role in ROLES)}
    assert all(os.path.dirname(s["file"]) == "./secrets" for s in compose()["secrets"].values())
