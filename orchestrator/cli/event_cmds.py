"""`orch events show ENTRY_ID`: one event, the rules it matched with the runs they started, and why the
other rules listening to its type did not start one (events/decisions.py)."""

from __future__ import annotations

from typing import Any

import click

from ..connection import connect
from ..jsonutil import dumps
from ..state.keys import Keys
from .common import fail, handle_errors, make_settings, project_option

__all__ = ["add_event_commands", "print_event_decisions", "why"]

_STYLE = {"matched": "green", "queued": "cyan", "error": "red", "cut": "red", "skipped": "yellow", "held": "yellow",
          "not_matched": "dim", "throttled": "cyan", "debounced": "cyan", "batched": "cyan", "waiting": "cyan",
          "replaced": "green", "rate_limited": "yellow", "singleton_skipped": "yellow"}
_STATE = {"processed": "processed", "in_progress": "being processed (read, not yet acknowledged)",
          "waiting": "not read by the engine yet"}


def add_event_commands(events: click.Group) -> None:
    events.add_command(events_show)


@click.command("show")
@click.argument("entry_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@project_option
@handle_errors
def events_show(entry_id: str, as_json: bool, project: str | None) -> None:
    """One event (ENTRY_ID: its stream entry id, as `orch events list --json` shows) with the rules it
    matched, the runs they started, and why other rules listening to its type did not."""
    from ..events.decisions import EntryIdError, event_decisions
    from .output import print_json

    settings = make_settings(project)
    try:
        found = event_decisions(connect(settings), Keys(settings.key_prefix), entry_id)
    except EntryIdError as exc:
        fail(str(exc), code=2)
        return
    if found is None:
        fail(f"no event at entry {entry_id!r} (it may have been trimmed); list events with `orch events list --json`")
        return
    print_json(found) if as_json else print_event_decisions(found)


def print_event_decisions(found: dict[str, Any]) -> None:
    """An event and its decisions, for people."""
    from rich.table import Table
    from rich.text import Text

    from .output import console, event_cells

    event, record = found.get("event"), found.get("decisions")
    if event is not None:
        when, type_, source, event_id, subject, _ = event_cells(event)
        data = dumps(event.get("data")).decode(errors="replace")
        console.print(Text(f"event {type_}  id={event_id}  source={source}  subject={subject}"))
        console.print(Text(f"  entry     {found['entry_id']} (received {when})"))
        console.print(Text(f"  data      {data if len(data) <= 300 else data[:299] + '…'}"))
    else:
        console.print(Text(f"event at entry {found['entry_id']}: trimmed from the stream; its decisions remain"))
    console.print(Text(f"  engine    {_STATE.get(found.get('state', ''), found.get('state', ''))}"))
    if record is None:
        if found.get("state") == "processed":
            console.print("  no rule listens to events of this type (or the record expired with the event)")
        return
    console.print(Text(f"  depth     {record['depth']} (chain depth: 0 for events from outside orch)"))
    table = Table(box=None, pad_edge=False)
    for column in ("RULE", "OUTCOME", "RUN"):
        table.add_column(column, no_wrap=True)
    table.add_column("WHY", overflow="fold")
    for decision in record["rules"]:
        outcome = decision["outcome"]
        table.add_row(Text(decision["rule"]), Text(outcome, style=_STYLE.get(outcome, "")),
                      Text(decision.get("run") or "-"), Text(why(decision)))
    console.print(table)
    if record.get("omitted"):
        console.print(f"  ... and {record['omitted']} more rule(s) that did not match, not recorded")


def why(decision: dict[str, Any]) -> str:
    """Why a rule decided as it did, in one line: what stopped it (`[match] data.plan: seen "free", expected
    ["pro","team"]`, or its reason), then a flow decision's detail (`key="c-42" until="..."`)."""
    parts = []
    stopped = f"[{decision['stopped_by']}] " if decision.get("stopped_by") else ""
    if decision.get("path") is not None:
        seen = "missing" if decision.get("missing") else f"seen {_json(decision.get('seen'))}"
        parts.append(f"{stopped}{decision['path']}: {seen}, expected {_json(decision.get('expected'))}")
    elif decision.get("reason"):
        parts.append(f"{stopped}{decision['reason']}")
    if decision.get("detail"):
        parts.append(" ".join(f"{key}={_json(value)}" for key, value in decision["detail"].items()))
    return "; ".join(parts)


def _json(value: Any) -> str:
    return dumps(value).decode(errors="replace")
