"""`orch rules ...`: work with a project's rules offline; and the rule checks `orch validate` adds.

    orch rules test FILE.json [--rules DIR] [--project DIR] [--json]

One `rules` group; further commands (`orch rules backtest`) are added to it with `@rules.command()`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import ConfigError, ConfigIssue, EventError
from ..settings import Settings
from .common import make_settings, project_option

__all__ = ["SCHEMAS_DIR", "check_rule_paths", "path_check_options", "path_warnings", "rules"]

SCHEMAS_DIR = "schemas"
RECORDED_SAMPLE = 1000  # the newest events read back from the stream for `orch validate`'s path check
BAD_INPUT = 2
F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def rules() -> None:
    """Work with the project's rules offline."""


@rules.command("test")
@click.argument("event_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rules", "rules_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Test the rules in DIR (YAML files with `rules:`) instead of the project's rules/.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@project_option
def test_rules(event_file: Path, rules_dir: Path | None, as_json: bool, project: str | None) -> None:
    """Run one event (a CloudEvent in FILE.json) through the rules, without Redis: which rules listen to
    its type, which match (with their rendered parameters) and why the others do not.

    A bare event needs only `type` (and usually `data`); `id`, `specversion` and `source` are filled
    in and reported. Exit status: 0 when the event and the rules load, whatever matched; 2 when the
    file or the project is unusable (the message says what to fix).
    """
    from ..engine.trial import try_event
    from ..project import load_rules
    from .output import print_json
    from .wiring import load_project

    settings = make_settings(project)
    event, filled = _read_event(event_file)
    try:
        loaded = load_project(settings.project_dir, watch_roots=settings.watch_roots)
        chosen = load_rules(loaded, rules_dir) if rules_dir is not None else None
    except ConfigError as exc:
        _bad_input("the rules have problems (fix them, then test again):\n" + "\n".join(f"  {i}" for i in exc.issues))
    report = try_event(loaded, event, chosen)
    if as_json:
        print_json({"event": event.to_dict(), "filled_in": filled, "rules": report,
                    "matched": [r["rule"] for r in report if r["matched"]]})
        return
    _print_report(event.type, event.source, filled, report)


def _read_event(path: Path) -> Any:
    from ..engine.trial import event_for_test

    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        _bad_input(f"cannot read {path}: {exc.strerror or exc}")
    except (ValueError, UnicodeDecodeError) as exc:
        _bad_input(f"{path} is not JSON ({exc}): give a CloudEvent such as "
                   '{"type": "order.created", "source": "/shop", "data": {...}}')
    try:
        return event_for_test(values)
    except EventError as exc:
        _bad_input(f"{path}: {exc}")


def _bad_input(message: str) -> Any:
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)
    raise SystemExit(BAD_INPUT)


def _print_report(event_type: str, source: str, filled: list[str], report: list[dict[str, Any]]) -> None:
    note = f" (filled in: {', '.join(filled)})" if filled else ""
    click.echo(f"event {event_type} from {source}{note}")
    if not report:
        click.echo(f"no rule listens to type {event_type!r}")
        return
    matched = sum(1 for r in report if r["matched"])
    click.echo(f"{len(report)} candidate rule(s), {matched} matched")
    for item in report:
        name = f"{item['rule']} -> {item['workflow']}"
        if item["matched"] and item.get("error"):
            click.echo(f"  matched      {name}: parameters did not render: {item['error']}")
        elif item["matched"]:
            click.echo(f"  matched      {name}  params: {json.dumps(item['params'], ensure_ascii=False)}")
        else:
            click.echo(f"  not matched  {name}: {item['reason']}")
            if item.get("path") is not None:
                seen = "nothing (missing)" if item.get("missing") else repr(item["seen"])
                click.echo(f"               at {item['path']}: saw {seen}, expected {item['expected']!r}")


# -- orch validate: rule paths that can never match ------------------------------------------------


def path_check_options(fn: F) -> F:
    """`--strict` and `--no-redis` for `orch validate`."""
    fn = click.option("--strict", is_flag=True, help="Exit 1 on warnings too (rule paths that can never match).")(fn)
    return click.option("--no-redis", is_flag=True,
                        help="Do not read recorded events from Redis (schemas only).")(fn)


def check_rule_paths(project: Any, settings: Settings, summary: dict[str, Any], *, offline: bool, strict: bool,
                     quiet: bool) -> bool:
    """Add the path warnings and notes to `validate`'s summary, print them (to stderr, unless `quiet`),
    and say whether validation fails (with `strict`, any warning does)."""
    warnings, notes = path_warnings(project, settings, offline=offline)
    failed = strict and bool(warnings)
    summary.update(ok=summary.get("ok", True) and not failed, notes=notes, warnings=[
        {"file": str(w.file) if w.file else None, "line": w.line, "field": w.field, "message": w.message}
        for w in warnings])
    for line in [] if quiet else [f"warning: {w}" for w in warnings] + [f"note: {n}" for n in notes]:
        click.echo(line, err=True)
    if failed and not quiet:
        click.echo(f"{len(warnings)} warning(s), and --strict makes them fail", err=True)
    return failed


def path_warnings(project: Any, settings: Settings, *, offline: bool) -> tuple[list[ConfigIssue], list[str]]:
    """Warnings about the project's rule paths, and notes on what was not checked (e.g. Redis down)."""
    from ..rules.reach import unreachable_paths

    schemas, issues = _load_schemas(project.root / SCHEMAS_DIR)
    notes: list[str] = []
    recorded: list[dict[str, Any]] = []
    if offline:
        notes.append("recorded events not checked (--no-redis)")
    else:
        recorded, note = _recorded_events(settings)
        notes += [note] if note else []
    for warning in unreachable_paths(project.rules, schemas, recorded):
        path, line = project.locations.get(("rules", warning.rule), (None, None))
        issues.append(ConfigIssue(path, line, f"rules.{warning.rule}.match.{warning.path}", warning.message))
    return issues, notes


def _load_schemas(folder: Path) -> tuple[dict[str, Any], list[ConfigIssue]]:
    from jsonschema import Draft202012Validator, SchemaError

    schemas: dict[str, Any] = {}
    issues: list[ConfigIssue] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            issues.append(ConfigIssue(path, getattr(exc, "lineno", None), None, f"not a JSON file: {exc}"))
            continue
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.path) or "(root)"
            issues.append(ConfigIssue(path, None, where, f"not a valid JSON Schema (draft 2020-12): {exc.message}"))
            continue
        schemas[path.stem] = schema
    return schemas, issues


def _recorded_events(settings: Settings) -> tuple[list[dict[str, Any]], str | None]:
    from ..connection import connect
    from ..events.recent import recent_events
    from ..state.keys import Keys

    try:
        client = connect(settings)
        return recent_events(client, Keys(settings.key_prefix), limit=RECORDED_SAMPLE), None
    except Exception as exc:  # noqa: BLE001 - Redis down or failing: this check is best effort, and says so
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return [], f"recorded events not checked: Redis is not reachable ({first}); use --no-redis to skip"
