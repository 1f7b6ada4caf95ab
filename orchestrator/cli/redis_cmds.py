"""`orch redis-acl`: Redis ACL users for orch's roles, least privilege (orchestrator/redis_acl.py)."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from ..redis_acl import ROLES, acl_file
from .common import handle_errors

__all__ = ["redis_acl", "write_secrets"]


@click.command("redis-acl")
@click.option("--prefix", default="orch", show_default=True, help="ORCH_KEY_PREFIX of the deployment.")
@click.option("--role", "roles", multiple=True, type=click.Choice(list(ROLES)),
              help="Only these roles (repeatable); default: all.")
@click.option("--user-prefix", default="orch-", show_default=True, help="ACL user names: <prefix><role>.")
@click.option("--no-read-only", is_flag=True,
              help="Write read-only key patterns as full ones (Redis 6.2 has no %R~).")
@click.option("--secrets-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the secrets of a deployment there instead: users.acl (password hashes, default user "
                   "off) for Redis's --aclfile, and redis-password-<role>, one per role, for "
                   "ORCH_REDIS_PASSWORD_FILE (deploy/compose/compose.yaml).")
@handle_errors
def redis_acl(prefix: str, roles: tuple[str, ...], user_prefix: str, no_read_only: bool,
              secrets_dir: Path | None) -> None:
    """Print an aclfile with one user per role, each with a new random password, allowed only the keys
    and commands that role uses; the ORCH_REDIS_URL of each role goes to stderr.

    Load it with `aclfile /etc/redis/users.acl` in redis.conf (then ACL LOAD), or turn each line into
    `ACL SETUSER ...`. Keep an admin user for operators: `orch tokens` and `orch runs` need more.
    """
    passwords = {role: secrets.token_urlsafe(24) for role in (roles or ROLES)}
    if secrets_dir is not None:
        write_secrets(secrets_dir, passwords, prefix, user_prefix, read_only=not no_read_only)
        for role in passwords:
            click.echo(f"orch {role}: ORCH_REDIS_URL=redis://{user_prefix}{role}@HOST:6379/0 "
                       f"ORCH_REDIS_PASSWORD_FILE=.../redis-password-{role}")
        return
    click.echo(acl_file(passwords, prefix, user_prefix, read_only=not no_read_only), nl=False)
    for role, password in passwords.items():
        click.echo(f"# orch {role}: ORCH_REDIS_URL=redis://{user_prefix}{role}:{password}@HOST:6379/0", err=True)


def write_secrets(directory: Path, passwords: dict[str, str], prefix: str, user_prefix: str,
                  read_only: bool = True) -> None:
    """users.acl and one redis-password-<role> per role in `directory`, which only its owner may enter.

    The files themselves are readable by all (0644): a container bind-mounts each as a secret and reads
    it as its own user (redis, orch's uid 10001), not as the owner here; the directory keeps others out.
    Existing files are refused, not overwritten: new passwords would lock out the running deployment.
    """
    names = ["users.acl", *(f"redis-password-{role}" for role in passwords)]
    taken = [name for name in names if (directory / name).exists()]
    if taken:
        raise click.ClickException(f"{directory} already holds {', '.join(taken)}: remove them first to make "
                                   "new passwords (then restart Redis and every orch service)")
    if directory.exists() and any(directory.iterdir()):
        raise click.ClickException(f"{directory} is not empty: give a new or empty directory (it is what keeps "
                                   "the password files from other users: orch makes it 0700)")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    contents = {"users.acl": acl_file(passwords, prefix, user_prefix, read_only, hashed=True)}
    contents |= {f"redis-password-{role}": password + "\n" for role, password in passwords.items()}
    for name, text in contents.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
