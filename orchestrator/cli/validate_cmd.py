"""`orch validate`: check a project as every role would load it, and warn about rule paths that can never
match (rule_cmds.py)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import make_settings, project_option
from .rule_cmds import path_check_options

__all__ = ["validate"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@path_check_options
@project_option
def validate(as_json: bool, project: str | None, strict: bool, no_redis: bool) -> None:
    """Check the project's rules and workflows; errors name the file, line and field. Warns about rule
    paths that no declared event schema or recorded event has (exit 1 on them with --strict)."""
    from ..errors import ConfigError
    from .output import print_json
    from .rule_cmds import check_rule_paths
    from .wiring import load_project

    settings = make_settings(project)
    try:
        loaded = load_project(settings.project_dir, watch_roots=settings.watch_roots, check_watch_paths=True)
    except ConfigError as exc:
        if as_json:
            print_json({"ok": False, "issues": [{"file": str(i.file) if i.file else None, "line": i.line,
                                                 "field": i.field, "message": i.message} for i in exc.issues]})
        else:
            for issue in exc.issues:
                click.echo(str(issue), err=True)
            click.echo(f"{len(exc.issues)} problem(s) in {settings.project_dir}", err=True)
        raise SystemExit(1) from None
    summary = {"ok": True, "project": str(loaded.root), "rules": [r.name for r in loaded.rules],
               "workflows": {name: [n.name for n in wf.spec.nodes] for name, wf in loaded.workflows.items()},
               "tasks": sorted(loaded.tasks), "queues": loaded.queues, "schedules": sorted(loaded.schedules),
               "hooks": sorted(loaded.hooks), "watches": sorted(loaded.watches)}
    failed = check_rule_paths(loaded, settings, summary, offline=no_redis, strict=strict, quiet=as_json)
    if as_json:
        print_json(summary)
        raise SystemExit(int(failed))
    click.echo(f"ok: {Path(loaded.root).name}: {len(loaded.rules)} rules, {len(loaded.workflows)} workflows, "
               f"{len(loaded.tasks)} tasks, {len(loaded.schedules)} schedules, {len(loaded.hooks)} webhooks, "
               f"{len(loaded.watches)} watches")
    for name, wf in loaded.workflows.items():
        order = " -> ".join(", ".join(level) for level in wf.spec.levels())
        click.echo(f"  workflow {name}: {order}")
    for config in loaded.schedules.values():
        click.echo(f"  schedule {config.name}: {config.cron} ({config.timezone})")
    for kind, names in (("webhook", loaded.hooks), ("watch", loaded.watches)):
        for name in names:
            click.echo(f"  {kind} {name}")
    raise SystemExit(int(failed))
