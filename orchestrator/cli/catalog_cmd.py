"""`orch catalog`: the project as the running engine loaded it (what GET /catalog answers)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from ..connection import connect
from ..state.keys import Keys
from .common import fail, handle_errors, make_settings, project_option

__all__ = ["catalog"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as GET /catalog answers it.")
@click.option("--firings", type=click.IntRange(0, 100), default=5, show_default=True,
              help="Upcoming firings per schedule.")
@project_option
@handle_errors
def catalog(as_json: bool, firings: int, project: str | None) -> None:
    """Rules, workflows, schedules (next firings, UTC and local, DST changes marked), webhooks (deliveries
    by result) and watches, from the catalogue the engine writes to Redis when it starts."""
    from ..catalog import catalog_view
    from ..catalog.store import NO_CATALOG
    from .output import print_json

    settings = make_settings(project)
    view = catalog_view(connect(settings), Keys(settings.key_prefix), datetime.now(UTC), firings)
    if view is None or "error" in view:
        fail(NO_CATALOG if view is None else str(view["error"]))
        return
    if as_json:
        print_json(view)
        return
    click.echo(f"project {view['project']['name']} ({view['project']['path']}), as an engine loaded it at "
               f"{view['written_at']}")
    for title, columns, rows in _sections(view):
        click.echo(f"\n{title}")
        if rows:
            _table(columns, rows)
        else:
            click.echo("  none")


def _sections(view: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    return [
        ("RULES", ["NAME", "EVENTS", "SOURCE", "FILTER", "WORKFLOW"],
         [[r["name"] + ("" if r["enabled"] else " (disabled)"), ",".join(r["types"]), r["source"] or "-",
           r["filter"] or "-", r["workflow"]] for r in view["rules"]]),
        ("WORKFLOWS", ["NAME", "KIND", "VERSION", "TASKS"],
         [[w["name"], w["kind"], w["version"], " ".join(n["name"] for n in w["nodes"])] for w in view["workflows"]]),
        ("SCHEDULES", ["NAME", "CRON", "TIMEZONE", "NEXT (UTC)", "NEXT (LOCAL)", "DST", "RULES"],
         [[s["name"], s["cron"], s["timezone"], *_next(s), ",".join(s["rules"]) or "-"] for s in view["schedules"]]),
        ("WEBHOOKS", ["NAME", "PATH", "VERIFY", "DELIVERIES", "RULES"],
         [[h["name"], h["path"], h["verify"], " ".join(f"{k}={v}" for k, v in sorted(h["deliveries"].items()) if v)
           or "-", ",".join(h["rules"]) or "-"] for h in view["hooks"]]),
        ("WATCHES", ["NAME", "DIRECTORY", "EVENTS", "RULES"],
         [[w["name"], w["directory"], ",".join(w["events"]), ",".join(w["rules"]) or "-"] for w in view["watches"]]),
    ]


def _next(schedule: dict[str, Any]) -> list[str]:
    if schedule.get("next_error"):
        return ["-", "-", schedule["next_error"]]
    if not schedule["next"]:
        return ["-", "-", "disabled" if not schedule["enabled"] else "-"]
    first = schedule["next"][0]
    return [first["utc"], first["local"], first["dst"] or "-"]


def _table(columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table
    from rich.text import Text

    from .output import console

    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)
