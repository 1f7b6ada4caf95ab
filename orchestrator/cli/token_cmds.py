"""`orch tokens create|list|revoke`: API tokens with scopes (orchestrator/tokens.py). They talk to Redis
directly: whoever can run them can reach orch's Redis, which is the operator's own access."""

from __future__ import annotations

import time

import click

from ..connection import connect
from ..state.keys import Keys
from ..tokens import SCOPES, TokenError, TokenStore
from .common import fail, handle_errors, make_settings, project_option

__all__ = ["tokens"]


def _store(project: str | None) -> TokenStore:
    settings = make_settings(project)
    return TokenStore(connect(settings), Keys(settings.key_prefix))


@click.group(help=f"Manage API tokens: each has a name and scopes ({', '.join(SCOPES)}).")
def tokens() -> None:
    pass


@tokens.command("create")
@click.option("--name", required=True, help="A unique name; it is the actor recorded for what the token does.")
@click.option("--scope", "scopes", multiple=True, required=True, metavar="SCOPE",
              help=f"Repeatable: {', '.join(SCOPES)}.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {token, id, name, scopes}.")
@project_option
@handle_errors
def create(name: str, scopes: tuple[str, ...], as_json: bool, project: str | None) -> None:
    """Create a token and print it (once: Redis keeps only its hash)."""
    from .output import print_json

    try:
        token, record = _store(project).create(name, scopes)
    except TokenError as exc:
        fail(str(exc))
        return
    if as_json:
        print_json({"token": token, **record.to_dict()})
        return
    click.echo(token)
    click.echo(f"token {record.name!r} (id {record.id}) with scopes {', '.join(sorted(record.scopes))}; "
               "it is shown only now: keep it in a secret store", err=True)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@project_option
@handle_errors
def list_tokens(as_json: bool, project: str | None) -> None:
    """The tokens: name, id, scopes, created, last used (never the tokens themselves)."""
    from .output import print_json
    from .trigger_cmds import print_table

    records = _store(project).list()
    if as_json:
        print_json([r.to_dict() for r in records])
        return
    if not records:
        click.echo("no tokens (create one with `orch tokens create --name NAME --scope SCOPE`)")
        return
    print_table(["NAME", "ID", "SCOPES", "CREATED", "LAST USED"],
                [[r.name, r.id, ",".join(sorted(r.scopes)), _when(r.created_at), _when(r.last_used_at)]
                 for r in records])


@tokens.command("revoke")
@click.argument("name_or_id")
@project_option
@handle_errors
def revoke(name_or_id: str, project: str | None) -> None:
    """Revoke a token by name or id (API processes stop accepting it within 2 s)."""
    try:
        record = _store(project).revoke(name_or_id)
    except TokenError as exc:
        fail(str(exc))
        return
    click.echo(f"revoked token {record.name!r} (id {record.id})")


def _when(epoch_s: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_s)) if epoch_s else "-"
