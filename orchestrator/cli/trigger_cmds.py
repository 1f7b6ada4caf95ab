"""`orch triggers` (cron and file watches) and `orch schedules list|next`."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from .. import health, tracing
from ..connection import connect
from ..state.keys import Keys
from .common import die_with_parent, fail, handle_errors, make_settings, project_option, setup_logging
from .health_cmd import health_port_option, start_health

if TYPE_CHECKING:
    from triggers.cron import ScheduleConfig

__all__ = ["schedules", "triggers"]

log = logging.getLogger(__name__)


@click.command()
@project_option
@health_port_option
@handle_errors
def triggers(project: str | None, health_port: int | None) -> None:
    """Fire the project's cron schedules and watch its directories (safe to run several replicas).

    Each tick of a schedule becomes exactly one event however many replicas run; file changes
    (also those made while no watcher ran) become file.added / file.modified / file.deleted events.
    """
    from triggers.cron import CronRunner
    from triggers.files import FileWatcher

    from .wiring import load_project

    settings = make_settings(project)
    setup_logging(settings.log_level, settings.log_format)
    tracing.configure("triggers")
    die_with_parent()
    loaded = load_project(settings.project_dir, watch_roots=settings.watch_roots, check_watch_paths=True)
    client = connect(settings, wait=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cron = CronRunner(client, settings, list(loaded.schedules.values()))
    watches = [w for w in loaded.watches.values() if w.enabled]
    if not cron.schedules and not watches:
        log.warning("orch triggers: no enabled schedules or watches in %s/rules; waiting for a stop signal "
                    "(declare them under schedules: or watches: in a rules/*.yaml file)", loaded.root)
    threads = [threading.Thread(target=cron.run, args=(stop,), name="cron", daemon=True)] if cron.schedules else []
    if watches:
        watcher = FileWatcher(client, settings, watches)
        threads.append(threading.Thread(target=watcher.run, args=(stop,), name="files", daemon=True))
    for thread in threads:
        thread.start()
    start_health("triggers", client, settings, health_port)  # /livez: this loop and cron's progress
    while not stop.wait(1.0):
        health.tick("triggers", 1.0)
        dead = [t.name for t in threads if not t.is_alive()]
        if dead:  # never fire nothing while looking alive: exit, so a supervisor restarts us
            log.error("orch triggers: the %s thread stopped unexpectedly; exiting", ", ".join(dead))
            stop.set()
            raise SystemExit(1)
    for thread in threads:
        thread.join(timeout=10)


@click.group()
def schedules() -> None:
    """Inspect cron schedules."""


def _load(project: str | None) -> dict[str, ScheduleConfig]:
    from .wiring import load_project

    settings = make_settings(project)
    return load_project(settings.project_dir, watch_roots=settings.watch_roots).schedules


def _last_fired(project: str | None, names: list[str]) -> dict[str, str | None]:
    """The last decided tick of each schedule, when Redis is reachable (else nothing)."""
    try:
        settings = make_settings(project)
        client = connect(settings)
        keys = Keys(settings.key_prefix)
        values = client.mget([keys.schedule_last(n) for n in names]) if names else []
    except Exception:  # noqa: BLE001 - listing schedules must work without Redis
        return {}
    return {n: _iso(datetime.fromtimestamp(int(v) / 1000, UTC)) if v else None
            for n, v in zip(names, values, strict=True)}


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table
    from rich.text import Text

    from .output import console

    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@schedules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@project_option
@handle_errors
def schedules_list(as_json: bool, project: str | None) -> None:
    """The project's schedules with their next firing and the last tick fired."""
    from .output import print_json

    found = _load(project)
    last = _last_fired(project, list(found))
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for config in found.values():
        upcoming = config.trigger.next_after(now) if config.enabled else None
        rows.append({"name": config.name, "cron": config.cron, "timezone": config.timezone,
                     "enabled": config.enabled, "type": config.type, "catchup": config.catchup,
                     "overlap": config.overlap, "next_utc": _iso(upcoming.at) if upcoming else None,
                     "next_local": upcoming.local.isoformat() if upcoming else None,
                     "last_fired_utc": last.get(config.name)})
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no schedules (declare them under `schedules:` in a rules/*.yaml file)")
        return
    print_table(["NAME", "CRON", "TIMEZONE", "NEXT (UTC)", "NEXT (LOCAL)", "LAST FIRED (UTC)", "CATCHUP", "OVERLAP"],
                [[r["name"] + ("" if r["enabled"] else " (disabled)"), r["cron"], r["timezone"],
                  str(r["next_utc"] or "-"), str(r["next_local"] or "-"), str(r["last_fired_utc"] or "-"),
                  r["catchup"], r["overlap"]] for r in rows])


@schedules.command("next")
@click.argument("name")
@click.option("--count", "-n", type=click.IntRange(1, 10000), default=10, show_default=True)
@click.option("--after", default=None, help="Start from this time (ISO 8601, e.g. 2026-10-24T00:00Z); default now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@project_option
@handle_errors
def schedules_next(name: str, count: int, after: str | None, as_json: bool, project: str | None) -> None:
    """The next firings of schedule NAME in UTC and local time; DST moves, repeats and merges are marked."""
    from .output import print_json

    found = _load(project)
    config = found.get(name)
    if config is None:
        fail(f"no schedule {name!r}; schedules: {', '.join(found) or 'none'} (see `orch schedules list`)")
        return
    start = datetime.now(UTC)
    if after:
        try:
            start = datetime.fromisoformat(after.replace("Z", "+00:00"))
        except ValueError:
            fail(f"--after {after!r} is not an ISO 8601 time such as 2026-10-24T00:00Z")
        if start.tzinfo is None:
            start = start.replace(tzinfo=config.trigger.zone)
    ticks = list(config.trigger.ticks(start, limit=count))
    rows = [{"utc": _iso(t.at), "local": t.local.isoformat(), "dst": t.note or ""} for t in ticks]
    if as_json:
        print_json({"schedule": name, "cron": config.cron, "timezone": config.timezone, "ticks": rows})
        return
    click.echo(f"{name}: {config.cron} in {config.timezone}")
    print_table(["UTC", "LOCAL", "DST"], [[r["utc"], r["local"], r["dst"]] for r in rows])
