"""The `orch` command. Process commands (api, engine, worker, dev) are the one place where the core,
`triggers/` and `executors/` are wired together; they import those packages lazily.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click

from .. import __version__, tracing
from ..connection import connect
from ..errors import EventError
from ..jsonutil import loads
from ..state.keys import Keys
from .common import (
    die_with_parent,
    fail,
    freeze_heap,
    handle_errors,
    make_settings,
    project_option,
    reader_gone,
    setup_logging,
    tune_engine,
)
from .health_cmd import health_port_option, start_health

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="orch")
def cli() -> None:
    """orch: event-driven workflows on Redis.

    Events (from apps, HTTP, this CLI) go to a Redis Stream; rules in the project's rules/*.yaml match
    them to workflows in workflows/*.py; tasks run as RQ jobs in dependency order.

    Start everything for a project with `orch dev --project DIR`.
    """


# -- processes -------------------------------------------------------------------------------------


@cli.command()
@project_option
@health_port_option
@handle_errors
def engine(project: str | None, health_port: int | None) -> None:
    """Match events to rules, start runs, and advance them as tasks finish."""
    from executors.dispatch import RQDispatcher

    from ..engine import Engine
    from .reload_cmd import watch_project
    from .wiring import load_project

    settings = make_settings(project)
    setup_logging(settings.log_level, settings.log_format)
    tracing.configure("engine")
    die_with_parent()
    loaded = load_project(settings.project_dir, watch_roots=settings.watch_roots)
    client = connect(settings, wait=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    engine = Engine(client, settings, loaded, RQDispatcher(client, settings))
    watch_project(engine, settings, stop)  # rules and workflows reload without a restart (reload_cmd.py)
    start_health("engine", client, settings, health_port, ruleset=engine.reload.behind)  # /livez, /readyz
    freeze_heap()
    tune_engine()
    engine.run(stop)


@cli.command()
@project_option
@click.option("--queues", "-q", default=None,
              help="Comma-separated queues to serve. Default: every queue the project's tasks use.")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: HOST-PID); with --concurrency, the pool's name.")
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), default=None,
              help="Run N worker processes under a supervisor that restarts them and kills overrunning tasks.")
@click.option("--engine", type=click.Choice(["fast", "rq"]), default="fast", show_default=True,
              help="fast: orch's lean RQ-compatible loop; rq: RQ's stock SimpleWorker.")
@click.option("--fork-queues", default=None, metavar="Q1,Q2",
              help="Queues whose tasks each run in a forked child process, killed at their timeout.")
@click.option("--kill-grace", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="With --concurrency: seconds past a task's timeout before its worker process is killed.")
@click.option("--prefetch", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Jobs the fast engine claims at a time; 0: adaptive (about 50 ms of work, at most 32).")
@click.option("--pool-name", default=None, hidden=True, help="Internal: set by a pool for its worker processes.")
@health_port_option
@handle_errors
def worker(project: str | None, queues: str | None, burst: bool, name: str | None, concurrency: int | None,
           engine: str, fork_queues: str | None, kill_grace: float, prefetch: int, pool_name: str | None,
           health_port: int | None) -> None:
    """Run tasks from the project's queues (SIGTERM: finish the current task, then exit; twice: at once)."""
    from executors.refresh import ProjectRefresh
    from executors.worker import ForcedStop, run_worker

    from .wiring import load_project

    settings = make_settings(project)
    setup_logging(settings.log_level, settings.log_format)
    die_with_parent()
    loaded = load_project(settings.project_dir, watch_roots=settings.watch_roots)
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else loaded.queues
    forked = tuple(q.strip() for q in (fork_queues or "").split(",") if q.strip())
    if set(forked) - set(names):
        fail(f"--fork-queues names queues this worker does not serve: {', '.join(sorted(set(forked) - set(names)))}")
    if forked and engine != "fast":
        fail("--fork-queues needs --engine fast (RQ's own forking worker forks for every queue)")
    if concurrency is not None:
        from executors.pool import Pool

        args = ["--project", str(settings.project_dir), "--queues", ",".join(names), "--engine", engine,
                "--prefetch", str(prefetch), *(["--fork-queues", ",".join(forked)] if forked else []),
                *(["--burst"] if burst else []), "--health-port", "0"]  # the pool's listener answers for them
        pool = Pool(client := connect(settings, wait=True), settings, args, concurrency, grace_s=kill_grace, burst=burst,
                    name=name or "")
        start_health("worker", client, settings, health_port)
        sys.exit(pool.run())
    tracing.configure("worker")  # not in a pool's supervisor: its worker processes run the tasks
    refresh = ProjectRefresh(loaded.root, lambda: load_project(settings.project_dir, watch_roots=settings.watch_roots))
    try:
        start_health("worker", client := connect(settings, wait=True), settings, health_port)
        freeze_heap()
        run_worker(client, settings, loaded, names, burst=burst, name=name, engine=engine,
                   fork_queues=forked, pool=pool_name or "", prefetch=prefetch, refresh=refresh)
    except ForcedStop:
        sys.exit(1)


@cli.command()
@project_option
@click.option("--host", default=None, help="Interface for the API. Env: ORCH_API_HOST (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port for the API. Env: ORCH_API_PORT (default 8000).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Worker processes.")
@handle_errors
def dev(project: str | None, host: str | None, port: int | None, workers: int) -> None:
    """Run everything for a project: Redis (unless ORCH_REDIS_URL is set), API, engine and workers.

    Ctrl-C stops them all.
    """
    from .dev import run_dev

    sys.exit(run_dev(make_settings(project, api_host=host, api_port=port), workers=workers))


# -- events ----------------------------------------------------------------------------------------


@cli.command()
@click.argument("type")
@click.option("--data", "data_json", default=None, help="Event data as JSON.")
@click.option("--data-file", type=click.File("rb"), default=None, help="Read the event data (JSON) from a file ('-': stdin).")
@click.option("--source", default="/orch/cli", show_default=True, help="Event source.")
@click.option("--subject", default=None, help="Event subject.")
@click.option("--id", "event_id", default=None, help="Event id (default: a new one). Same source and id = same event.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@project_option
@handle_errors
def emit(type: str, data_json: str | None, data_file: Any, source: str, subject: str | None, event_id: str | None,
         as_json: bool, project: str | None) -> None:
    """Publish one event of TYPE (e.g. order.created) with JSON data; prints its id."""
    from ..events.client import Client

    if data_json is not None and data_file is not None:
        fail("give --data or --data-file, not both")
    raw = data_json.encode() if data_json is not None else data_file.read() if data_file is not None else None
    try:
        data = loads(raw) if raw is not None else None
    except ValueError as exc:
        fail(f"the event data is not valid JSON: {exc}")
    with Client(settings=make_settings(project), source=source) as client:
        try:
            published = client.publish([{"type": type, "data": data, "subject": subject, "source": source,
                                         **({"id": event_id} if event_id else {})}])[0]
        except EventError as exc:
            fail(str(exc))
    if as_json:
        from .output import print_json

        print_json({"id": published.event_id, "entry_id": published.entry_id, "duplicate": published.duplicate})
    elif published.duplicate:
        click.echo(f"{published.event_id} (duplicate: already accepted, not published again)")
    else:
        click.echo(published.event_id)


@cli.group()
def events() -> None:
    """Inspect events."""


@events.command("list")
@click.option("--limit", "-n", type=click.IntRange(1, 10000), default=20, show_default=True)
@click.option("--type", "type_glob", default=None, help="Only types matching this glob, e.g. 'order.*'.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@project_option
@handle_errors
def events_list(limit: int, type_glob: str | None, as_json: bool, project: str | None) -> None:
    """Recent events, newest first."""
    from ..events.recent import recent_events
    from .output import print_events, print_json

    settings = make_settings(project)
    found = recent_events(connect(settings), Keys(settings.key_prefix), limit=limit, type_glob=type_glob)
    print_json(found) if as_json else print_events(found)


@events.command("tail")
@click.option("--type", "type_glob", default=None, help="Only types matching this glob, e.g. 'order.*'.")
@click.option("--since", default=None, metavar="ID|DURATION",
              help="Start after this stream entry id (0: the whole stream), or this long ago (30s, 5m, 2h, 1d). "
                   "Default: only events that arrive from now on.")
@click.option("--count", "-n", type=click.IntRange(min=1), default=None, help="Exit after printing N events.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per event and line (NDJSON).")
@project_option
@handle_errors
def events_tail(type_glob: str | None, since: str | None, count: int | None, as_json: bool,
                project: str | None) -> None:
    """Follow events as they arrive (Ctrl-C stops). Reads without joining the engine's consumer group."""
    from ..events.tail import SinceError, follow, start_id
    from .output import print_event_line, print_json_line

    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt

    def retrying(exc: Exception, delay_s: float) -> None:
        click.echo(f"Redis unavailable ({str(exc).rstrip('.')}); retrying in {delay_s:.1f} s", err=True)

    settings = make_settings(project)
    client = connect(settings)
    stream = Keys(settings.key_prefix).events
    try:
        after = start_id(client, stream, since)
    except SinceError as exc:
        fail(str(exc), code=2)
        return
    signal.signal(signal.SIGTERM, interrupted)
    click.echo(f"following {stream} after entry {after} (Ctrl-C stops)", err=True)
    printer = print_json_line if as_json else print_event_line
    try:
        for event in follow(client, stream, after, type_glob=type_glob, count=count, on_retry=retrying):
            printer(event)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        reader_gone()
    finally:
        client.close()


# -- runs ------------------------------------------------------------------------------------------


@cli.group()
def runs() -> None:
    """Inspect workflow runs."""


@runs.command("list")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]), default=None)
@click.option("--workflow", default=None, help="Only runs of this workflow.")
@click.option("--limit", "-n", type=click.IntRange(1, 10000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@project_option
@handle_errors
def runs_list(status: str | None, workflow: str | None, limit: int, as_json: bool, project: str | None) -> None:
    """Runs, newest first."""
    from ..state.store import RunStore
    from .output import print_json, print_runs

    settings = make_settings(project)
    store = RunStore(connect(settings), Keys(settings.key_prefix), retention_s=settings.run_retention_s)
    found = store.list(status=status, workflow=workflow, limit=limit)
    print_json(found) if as_json else print_runs(found)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@project_option
@handle_errors
def runs_show(run_id: str, as_json: bool, project: str | None) -> None:
    """One run: its tasks, their states, durations, and results or errors."""
    from ..state.store import RunStore
    from .output import print_json, print_run

    settings = make_settings(project)
    store = RunStore(connect(settings), Keys(settings.key_prefix), retention_s=settings.run_retention_s)
    run = store.get(run_id)
    if run is None:
        fail(f"no run {run_id!r} (it may have expired); list runs with `orch runs list`")
        return
    print_json(run.to_dict()) if as_json else print_run(run.to_dict())


def _add_trigger_commands() -> None:
    from .event_cmds import add_event_commands
    from .log_cmds import add_log_commands
    from .rule_cmds import rules
    from .steer_cmds import add_steering_commands
    from .trigger_cmds import schedules, triggers
    from .validate_cmd import validate

    cli.add_command(triggers)
    cli.add_command(schedules)
    cli.add_command(rules)
    cli.add_command(validate)
    add_steering_commands(runs)
    add_log_commands(runs)
    add_event_commands(events)


_add_trigger_commands()


def _add_worker_commands() -> None:
    from .api_cmd import api
    from .backtest_cmd import register as register_backtest
    from .catalog_cmd import catalog
    from .health_cmd import health
    from .redis_cmds import redis_acl
    from .reload_cmd import reload
    from .slot_cmds import slots
    from .token_cmds import tokens
    from .workers_cmd import workers

    cli.add_command(api)
    cli.add_command(catalog)
    cli.add_command(health)
    cli.add_command(redis_acl)
    cli.add_command(slots)
    cli.add_command(reload)
    cli.add_command(tokens)
    cli.add_command(workers)
    register_backtest(cli)  # on the `rules` group


_add_worker_commands()


def main() -> None:
    cli(prog_name="orch")
