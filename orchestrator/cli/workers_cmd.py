"""`orch workers`: the registered workers (what each runs, for how long) and the depth of every queue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from ..connection import connect
from ..state.keys import Keys
from .common import handle_errors, make_settings, project_option

__all__ = ["workers"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {workers: [...], queues: [...]}.")
@project_option
@handle_errors
def workers(as_json: bool, project: str | None) -> None:
    """Workers (name, host, pid, queues, state, current task and for how long, jobs done, last heartbeat)
    and queues (jobs queued, started, failed, the oldest queued job's age, tasks finished per minute).

    A worker whose heartbeat expired shows as `lost` until the engine hands back the jobs it held.
    """
    from ..catalog import queues_view, workers_view
    from .output import print_json

    settings = make_settings(project)
    client, keys, now = connect(settings), Keys(settings.key_prefix), datetime.now(UTC)
    found = {"workers": workers_view(client, keys, now), "queues": queues_view(client, keys, now)}
    if as_json:
        print_json(found)
        return
    _print_workers(found["workers"])
    click.echo()
    _print_queues(found["queues"])


def _print_workers(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from .output import console

    if not rows:
        console.print("no workers registered (start some with `orch worker`)")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("WORKER", "HOST", "PID", "QUEUES", "STATE", "TASK", "FOR", "DONE", "FAILED", "HELD", "HEARTBEAT"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for row in rows:
        current = row["current"]
        task = f"{current['task'] or current['job']} ({current['run'] or '-'})" if current else "-"
        state = row["state"] if row["alive"] else "[red]lost[/]"
        table.add_row(row["name"], row["host"] or "-", str(row["pid"] or "-"), ",".join(row["queues"]) or "-", state,
                      task, _seconds(current["running_s"]) if current and current["running_s"] is not None else "-",
                      str(row["jobs_done"]), str(row["jobs_failed"]), str(row["claimed"]),
                      f"{_seconds(row['heartbeat_age_s'])} ago")
    console.print(table)


def _print_queues(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from .output import console

    if not rows:
        console.print("no queues yet (a queue appears when its first job is dispatched)")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("QUEUE", "QUEUED", "STARTED", "FAILED", "OLDEST", "DONE/MIN"):
        table.add_column(column, no_wrap=True, justify="left" if column == "QUEUE" else "right")
    for row in rows:
        oldest = _seconds(row["oldest_age_s"]) if row["oldest_age_s"] is not None else "-"
        table.add_row(row["queue"], str(row["queued"]), str(row["started"]), str(row["failed"]), oldest,
                      f"{row['throughput_per_min']:g}")
    console.print(table)


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"
