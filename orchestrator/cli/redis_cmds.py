"""`orch redis-acl`: Redis ACL users for orch's roles, least privilege (orchestrator/redis_acl.py)."""

from __future__ import annotations

import secrets

import click

from ..redis_acl import ROLES, acl_file
from .common import handle_errors

__all__ = ["redis_acl"]


@click.command("redis-acl")
@click.option("--prefix", default="orch", show_default=True, help="ORCH_KEY_PREFIX of the deployment.")
@click.option("--role", "roles", multiple=True, type=click.Choice(list(ROLES)),
              help="Only these roles (repeatable); default: all.")
@click.option("--user-prefix", default="orch-", show_default=True, help="ACL user names: <prefix><role>.")
@click.option("--no-read-only", is_flag=True,
              help="Write read-only key patterns as full ones (Redis 6.2 has no %R~).")
@handle_errors
def redis_acl(prefix: str, roles: tuple[str, ...], user_prefix: str, no_read_only: bool) -> None:
    """Print an aclfile with one user per role, each with a new random password, allowed only the keys
    and commands that role uses; the ORCH_REDIS_URL of each role goes to stderr.

    Load it with `aclfile /etc/redis/users.acl` in redis.conf (then ACL LOAD), or turn each line into
    `ACL SETUSER ...`. Keep an admin user for operators: `orch tokens` and `orch runs` need more.
    """
    passwords = {role: secrets.token_urlsafe(24) for role in (roles or ROLES)}
    click.echo(acl_file(passwords, prefix, user_prefix, read_only=not no_read_only), nl=False)
    for role, password in passwords.items():
        click.echo(f"# orch {role}: ORCH_REDIS_URL=redis://{user_prefix}{role}:{password}@HOST:6379/0", err=True)
