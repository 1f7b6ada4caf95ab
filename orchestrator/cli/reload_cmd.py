"""`orch reload`: make the project's rules and workflows the active rule-set version of every engine, and
the engine's side of it (`watch_project`: reload from its own files, watched).

    orch reload [--project DIR] [--wait] [--timeout S] [--force] [--json]

It loads and checks the project as `orch validate` does; an invalid project is never published (the
engines keep their version) and the problems are printed with file, line and field. A valid one is
published to Redis (state/ruleset.py); every engine switches to it between two batches (engine/reload.py).

Engines say in their view which workflows (name and digest) their own copy has. When live engines say so
and none of them has this copy's workflows (after waiting `AGREE_S` for their watchers to take up files
just deployed), nothing is published: such a version would leave every engine behind, starting no run.
--force publishes anyway. When some engines have them and some do not, it is published, and those that
do not are named (they go on applying task results and timers, and leave events to the others).
With --wait it waits until every live engine runs it, or says it cannot load it, and shows each.
Exit status: 0 published (and, with --wait, every live engine switched; without --wait, whether engines
lack its workflows or not); 1 the project is invalid, no live engine has its workflows (without
--force), or, with --wait, an engine cannot load the version; 2 --wait timed out.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import click
import redis

from ..connection import connect
from ..errors import ConfigError
from ..metrics import PROJECT_RELOADS, MetricsBatch
from ..settings import Settings
from ..state.keys import Keys
from ..state.ruleset import EngineView, active_version, digest_mismatch, publish, publisher, read_views
from .common import handle_errors, make_settings, project_option

__all__ = ["LIVE_S", "reload", "watch_project"]

LIVE_S = 15.0  # an engine whose heartbeat or view is older is not waited for
AGREE_S = 5.0  # how long to wait for a live engine to report this copy's workflows before refusing
POLL_S = 0.2


def watch_project(engine: Any, settings: Settings, stop: threading.Event) -> None:
    """Let `engine` (orchestrator.engine.Engine) load its project again, and watch its files unless
    ORCH_ENGINE_WATCH_PROJECT=false (then `orch reload` and a restart are the ways to change it)."""
    from .wiring import load_project

    engine.reload.reload_from(lambda: load_project(settings.project_dir, watch_roots=settings.watch_roots))
    if settings.engine_watch_project:
        engine.reload.watch(settings.project_dir, settings, stop)


@click.command("reload")
@project_option
@click.option("--wait", is_flag=True, help="Wait until every live engine runs the new version (or cannot).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="With --wait: seconds to wait.")
@click.option("--force", is_flag=True, help="Publish even when no live engine has this copy's workflows.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {ok, version, previous, engines, issues}.")
@handle_errors
def reload(project: str | None, wait: bool, timeout_s: float, force: bool, as_json: bool) -> None:
    """Publish the project's rules and workflows to every engine, without a restart."""
    from .output import print_json
    from .wiring import load_project

    settings = make_settings(project)
    client, keys = connect(settings), Keys(settings.key_prefix)
    try:
        loaded = load_project(settings.project_dir, watch_roots=settings.watch_roots)
    except ConfigError as exc:
        _refused(client, keys, settings, exc, as_json)
        return
    digests = {name: wf.spec.digest for name, wf in loaded.workflows.items()}
    lacking = _lacking(client, keys, digests, wait_s=0.0 if force else AGREE_S)
    if lacking and not force and all(lacking.values()):
        _no_engine_can(loaded.ruleset, lacking, as_json)
    previous = publish(client, keys, loaded, publisher("orch reload"))
    result: dict[str, Any] = {"ok": True, "version": loaded.ruleset, "previous": previous,
                              "rules": len(loaded.rules), "workflows": len(loaded.workflows),
                              "lacking": {engine: why for engine, why in lacking.items() if why}}
    if not as_json:
        same = " (already active)" if previous == loaded.ruleset else f" (was {previous or 'none'})"
        click.echo(f"published rule-set version {loaded.ruleset}{same}: {len(loaded.rules)} rules, "
                   f"{len(loaded.workflows)} workflows")
        for engine, why in lacking.items():
            if why:
                click.echo(f"  {engine} lacks this copy's workflows ({'; '.join(why)}): it will apply task "
                           "results and timers but start no run until its copy has them", err=True)
    code = 0
    if wait:
        views, done = _wait(client, keys, loaded.ruleset, timeout_s)
        result["engines"] = [_row(v, loaded.ruleset) for v in views]
        behind = [v for v in views if v.state == "behind" and v.wanted == loaded.ruleset]
        code = 2 if not done else 1 if behind else 0
        result["ok"] = code == 0
        result["timed_out"] = not done
        if not as_json:
            _print_engines(views, loaded.ruleset, done, timeout_s)
    if as_json:
        print_json(result)
    raise SystemExit(code)


def _refused(client: redis.Redis, keys: Keys, settings: Settings, exc: ConfigError, as_json: bool) -> None:
    from .output import print_json

    metrics = MetricsBatch()
    metrics.inc(PROJECT_RELOADS, "refused")
    pipe = client.pipeline(transaction=False)
    metrics.flush(pipe, keys)
    pipe.execute()
    active = active_version(client, keys)
    if as_json:
        print_json({"ok": False, "version": None, "active": active,
                    "issues": [{"file": str(i.file) if i.file else None, "line": i.line, "field": i.field,
                                "message": i.message} for i in exc.issues]})
    else:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        click.echo(f"{len(exc.issues)} problem(s) in {settings.project_dir}: nothing was published; the engines keep "
                   f"running rule-set version {active or '(none yet)'}. Fix them (`orch validate` shows them too) "
                   "and run `orch reload` again.", err=True)
    raise SystemExit(1)


def _lacking(client: redis.Redis, keys: Keys, digests: dict[str, str], wait_s: float) -> dict[str, list[str]]:
    """What each live engine that says which workflows it has lacks of `digests` (empty list: nothing),
    waiting up to `wait_s` for one that lacks nothing (its watcher may be taking up files just deployed)."""
    deadline = time.monotonic() + wait_s
    while True:
        live = _live(client, keys, read_views(client, keys), time.time())
        lacking = {v.engine: digest_mismatch(digests, v.workflows, "its copy", "this one")
                   for v in live if v.workflows is not None}
        if not lacking or not all(lacking.values()) or time.monotonic() >= deadline:
            return lacking
        time.sleep(POLL_S)


def _no_engine_can(version: str, lacking: dict[str, list[str]], as_json: bool) -> None:
    from .output import print_json

    if as_json:
        print_json({"ok": False, "version": version, "published": False, "lacking": lacking})
    else:
        for engine, why in lacking.items():
            click.echo(f"  {engine}: {'; '.join(why)}", err=True)
        click.echo(f"no live engine has this copy's workflows, so none could load rule-set version {version}: "
                   "nothing was published. Deploy these workflows to the engines' hosts first (their watchers "
                   "take them up), run `orch reload` from a copy they have, or `orch reload --force` to publish "
                   "anyway (engines that cannot load it apply task results and timers, but start no run).",
                   err=True)
    raise SystemExit(1)


def _live(client: redis.Redis, keys: Keys, views: dict[str, EngineView], now_s: float) -> list[EngineView]:
    """The views of engines alive lately (a recent heartbeat, or a recent view: a behind engine does not beat)."""
    beats = {name.decode(errors="replace"): score / 1000 for name, score in client.zrange(keys.engines, 0, -1, withscores=True)}
    return [v for v in views.values() if max(v.at, beats.get(v.engine, 0.0)) >= now_s - LIVE_S]


def _wait(client: redis.Redis, keys: Keys, version: str, timeout_s: float) -> tuple[list[EngineView], bool]:
    """Poll the engines' views until each live one runs `version` or is behind on it; (views, all decided)."""
    deadline = time.monotonic() + timeout_s
    while True:
        live = _live(client, keys, read_views(client, keys), time.time())
        decided = all(v.version == version or (v.state == "behind" and v.wanted == version) for v in live)
        if decided or time.monotonic() >= deadline:
            return live, decided
        time.sleep(POLL_S)


def _row(view: EngineView, version: str) -> dict[str, Any]:
    switched = view.version == version
    return {"engine": view.engine, "version": view.version, "switched": switched,
            "state": "switched" if switched else view.state if view.wanted == version else "waiting",
            "error": view.error, "refused": view.refused}


def _print_engines(views: list[EngineView], version: str, done: bool, timeout_s: float) -> None:
    if not views:
        click.echo("no engine is running: engines start with their own copy of the project (the last started "
                   "publishes its version)")
        return
    for view in views:
        row = _row(view, version)
        click.echo(f"  {row['engine']}: {row['state']} (runs {row['version']})"
                   + (f": {row['error']}" if row["state"] == "behind" else ""))
    if not done:
        click.echo(f"timed out after {timeout_s:g}s waiting for the engines above", err=True)
    elif any(_row(v, version)["state"] == "behind" for v in views):
        click.echo("some engines cannot load this version and start no run until they can: deploy the same "
                   "workflows to them, or `orch reload` a version they have", err=True)
