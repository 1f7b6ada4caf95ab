"""`orch slots`: the slot pools in use (rule concurrency, singletons, workflow limits), who holds each slot
until when, and the runs waiting in line."""

from __future__ import annotations

import click

from ..connection import connect
from ..state.keys import Keys
from .common import handle_errors, make_settings, project_option

__all__ = ["slots"]


@click.command()
@click.option("--rule", default=None, help="Only the pools of this rule (or workflow, for a workflow's limit).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of pools.")
@project_option
@handle_errors
def slots(rule: str | None, as_json: bool, project: str | None) -> None:
    """Slot pools in use: kind (rule: a rule's `concurrency`; singleton; workflow: a workflow's limit), rule
    or workflow, key, slots held of the limit, runs waiting; then each holder with its lease's expiry and
    the first runs in line (the next to start first)."""
    from ..state.slots import read_pools
    from .output import print_json
    from .trigger_cmds import print_table

    settings = make_settings(project)
    pools = read_pools(connect(settings), Keys(settings.key_prefix), rule=rule)
    if as_json:
        print_json(pools)
        return
    if not pools:
        click.echo("no slot is held and no run waits" + (f" for {rule}" if rule else ""))
        return
    print_table(["KIND", "NAME", "KEY", "HELD", "WAITING", "HOLDERS (lease until)", "NEXT"],
                [[p["kind"], p["name"], p["key"] or "-", f"{p['held']}/{p['limit']}", str(p["waiting"]),
                  " ".join(f"{h['run']} ({h['lease_until']})" for h in p["holders"]) or "-",
                  " ".join(p["next"][:3]) + (" ..." if p["waiting"] > 3 else "") or "-"] for p in pools])
