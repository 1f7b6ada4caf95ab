"""`orch rules backtest`: the recorded events run through the current rules and through a proposed rule set,
with no side effects, and the difference in the runs they would start (engine/backtest.py).

The current rules are the version the engines run: the active rule set in Redis (`orch reload`, or an
engine's start, publishes it), built with this project's workflows as an engine builds it; the project's
files only when Redis has none (said in a note). The proposed rules are --rules DIR, by default the
project's rules/ as on disk: so without --rules, a backtest shows what publishing the edited files changes.

`register(cli)` adds it to the CLI's `rules` group (`orch rules test` and others), or, with no such group,
to a minimal one of its own.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ..connection import connect
from ..engine.backtest import Backtest, starts, with_rules
from ..errors import ConfigError, EventError
from ..events.envelope import event_from_mapping
from ..events.history import read_window, trimmed_after
from ..events.tail import SinceError, parse_since
from ..jsonutil import dumps
from ..project import Project, load_rules
from ..project import with_rules as with_rule_configs
from ..state.keys import Keys
from ..state.ruleset import RulesetError, read_active, workflow_mismatch
from .common import fail, handle_errors, make_settings, project_option

__all__ = ["backtest", "current_rules", "register"]

PROGRESS_EVERY = 10_000  # entries between two progress lines on stderr


def current_rules(project: Project, client: Any, keys: Keys) -> tuple[Project, dict[str, Any], list[str]]:
    """The rule set the engines run (the active version in Redis, with `project`'s workflows), how to name it
    ({rules, version}), and notes; the project's rules on disk, with a note saying why, when Redis has no
    usable active version."""
    on_disk = {"rules": f"the project's rules ({project.root / 'rules'})", "version": project.ruleset}
    try:
        active = read_active(client, keys)
    except RulesetError as exc:
        return project, on_disk, [f"the active rule set in Redis cannot be read ({exc}): current = the rules on disk"]
    if active is None:
        return project, on_disk, ["no rule set is active in Redis yet (`orch reload` or an engine's start publishes "
                                  "one): current = the rules on disk"]
    try:
        current = with_rule_configs(project, active.rules, f"{keys.ruleset_data} (version {active.version})")
    except ConfigError as exc:
        return project, on_disk, [f"the active version {active.version} does not load with this project's "
                                  f"workflows ({exc.issues[0].message if exc.issues else exc}): current = the rules "
                                  "on disk"]
    mismatch = workflow_mismatch(active, project)
    notes = [f"{'; '.join(mismatch)}: the current runs are planned with this project's workflows"] if mismatch else []
    return current, {"rules": f"the active rule set in Redis (version {active.version})",
                     "version": active.version}, notes


@click.command("backtest")
@click.option("--rules", "rules_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Directory of proposed rule files (*.yaml, as in the project's rules/). Default: the project's "
                   "rules/.")
@click.option("--since", required=True, help="Start of the window: a duration back from now (24h, 30m, 7d) or a "
                                             "stream entry id (1700000000000-0).")
@click.option("--until", default=None, help="End of the window, like --since (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole comparison as JSON.")
@project_option
@handle_errors
def backtest(rules_dir: Path | None, since: str, until: str | None, as_json: bool, project: str | None) -> None:
    """Run the recorded events of a window through the current rules and through a proposed rule set
    (--rules DIR, with the project's workflows), and print the difference: runs that would newly start,
    runs that would no longer start, runs whose parameters change, and per rule counts with example events.

    Pure: it matches and renders parameters only, and writes nothing to Redis. Counts are before flow
    control (debounce and batch merge runs; throttle, rate limits and singletons delay or drop them),
    concurrency limits and schedule overlap policies.
    """
    from .output import print_json
    from .wiring import load_project

    settings = make_settings(project)
    local = load_project(settings.project_dir, watch_roots=settings.watch_roots)
    client, keys = connect(settings), Keys(settings.key_prefix)
    current, current_name, notes = current_rules(local, client, keys)
    proposed = with_rules(local, load_rules(local, rules_dir)) if rules_dir else local
    seconds, micros = client.time()
    now_s = int(seconds) + int(micros) / 1e6
    try:
        start = parse_since(since, now_s)
    except SinceError as exc:
        fail(str(exc), code=2)
        return
    try:
        end = _end(until, now_s)
    except SinceError as exc:
        fail(str(exc).replace("--since", "--until", 1), code=2)
        return
    result = _compare(client, keys.events, start, end, current, proposed)
    report = {"window": {"since": start, "until": end, "trimmed_before": trimmed_after(client, keys.events, start)},
              "current": {**current_name, "count": len(current.rules)},
              "proposed": {"rules": str(rules_dir.resolve()) if rules_dir else f"the project's rules "
                           f"({local.root / 'rules'})", "count": len(proposed.rules)},
              "notes": notes, **result.report()}
    print_json(report) if as_json else print_report(report)


def _end(until: str | None, now_s: float) -> str:
    """The last entry id of the window: "+" (now) by default; a time in milliseconds (a duration, or an entry
    id without its sequence) takes every entry of that millisecond."""
    if until is None:
        return "+"
    end = parse_since(until, now_s)
    return end if "-" in until.strip() else end.partition("-")[0]


def _compare(client: Any, stream: str, start: str, end: str, current: Project, proposed: Project) -> Backtest:
    result = Backtest()
    began, shown = time.monotonic(), [0]

    def progress(read: int, last: str) -> None:
        if read - shown[0] >= PROGRESS_EVERY:
            shown[0] = read
            click.echo(f"backtest: {read} entries read (up to {_when(last)}), {time.monotonic() - began:.0f} s",
                       err=True)

    for entry_id, body in read_window(client, stream, start, end, progress=progress):
        try:
            event = event_from_mapping(body)
        except (EventError, ValueError, TypeError, AttributeError):
            result.skip(entry_id)
            continue
        result.add(entry_id, event, starts(current, event), starts(proposed, event))
    return result


def _when(entry_id: str | None) -> str:
    """The time of a stream entry id (Redis's milliseconds), UTC."""
    ms = (entry_id or "").partition("-")[0]
    if not ms.isdigit():
        return "now" if entry_id == "+" else "-"
    return datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def print_report(report: dict[str, Any]) -> None:
    """The comparison, for people."""
    from rich.table import Table
    from rich.text import Text

    from .output import console

    window = report["window"]
    console.print(Text(f"backtest of {report['events']} events from {_when(window['since'])} to "
                       f"{_when(window['until'])} (entries {report['first_entry'] or '-'} .. "
                       f"{report['last_entry'] or '-'})"))
    console.print(Text(f"  current   {report['current']['rules']}: {report['current']['count']} rules, "
                       f"{report['current_runs']} runs"))
    console.print(Text(f"  proposed  {report['proposed']['rules']}: {report['proposed']['count']} rules, "
                       f"{report['proposed_runs']} runs"))
    if window["trimmed_before"]:
        console.print(Text(f"  note      the stream was trimmed past --since: it starts at {window['trimmed_before']}"
                           f" ({_when(window['trimmed_before'])}); older events are gone (ORCH_EVENTS_RETENTION_S)"))
    for note in report["notes"]:
        console.print(Text(f"  note      {note}"))
    if report["undecodable"]:
        console.print(Text(f"  note      {report['undecodable']} entries are not events and were skipped"))
    for caveat in report["caveats"]:
        console.print(Text(f"  note      {caveat}"))
    console.print(Text(f"\nruns that would newly start: {report['new']}\nruns that would no longer start: "
                       f"{report['gone']}\nruns whose parameters change: {report['changed']}\n"))
    table = Table(box=None, pad_edge=False)
    for column in ("RULE", "CURRENT", "PROPOSED", "NEW", "GONE", "CHANGED"):
        table.add_column(column, no_wrap=True, justify="left" if column == "RULE" else "right")
    table.add_column("EXAMPLES (entry id: event id)", overflow="fold")
    for rule in report["rules"]:
        table.add_row(Text(rule["rule"]), _runs(rule["current"]), _runs(rule["proposed"]), str(rule["new"]),
                      str(rule["gone"]), str(rule["changed"]), Text(_examples(rule["examples"])))
    console.print(table)
    changed = [(r["rule"], e) for r in report["rules"] for e in r["examples"].get("changed", [])]
    if changed:
        console.print("\nparameters that change (examples):")
        for rule, example in changed:
            console.print(Text(f"  {rule}  {example['entry_id']} ({example['event_id']}): "
                               f"{_side(example['current'])} -> {_side(example['proposed'])}"))


def _runs(counts: dict[str, int]) -> str:
    return f"{counts['runs']} ({counts['errors']} failing)" if counts["errors"] else str(counts["runs"])


def _examples(examples: dict[str, list[dict[str, Any]]]) -> str:
    return "  ".join(f"{kind}: " + ", ".join(f"{e['entry_id']}: {e['event_id']}" for e in found)
                     for kind, found in examples.items())


def _side(start: dict[str, Any]) -> str:
    shown = start["error"] if "error" in start else dumps(start["params"]).decode(errors="replace")
    return f"{start['workflow']} {shown}"


@click.group("rules")
def rules_group() -> None:
    """Rule sets: compare a proposed one with the current one over recorded events."""


def register(cli: click.Group) -> None:
    """Add `backtest` to the CLI's `rules` group, or add a `rules` group holding it when there is none yet."""
    group = cli.commands.get("rules")
    if isinstance(group, click.Group):
        group.add_command(backtest)
    else:
        rules_group.add_command(backtest)
        cli.add_command(rules_group)
