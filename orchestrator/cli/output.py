"""Human output for the CLI: tables and run details. `--json` output bypasses all of this."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["EVENT_COLUMNS", "console", "event_cells", "print_event_line", "print_events", "print_json",
           "print_json_line", "print_run", "print_runs"]

# Piped output (no terminal) gets a wide fixed width so ids and results are never cut to 80 columns.
console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)

_STATUS_STYLE = {"succeeded": "green", "failed": "red", "running": "yellow", "queued": "cyan", "pending": "dim",
                 "skipped": "dim"}


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _when(value: str | None) -> str:
    if not value:
        return "-"
    moment = datetime.fromisoformat(value).astimezone()
    today = datetime.now(UTC).astimezone().date()
    return moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _status(value: str) -> str:
    style = _STATUS_STYLE.get(value, "")
    return f"[{style}]{value}[/]" if style else value


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def print_runs(runs: list[dict[str, Any]]) -> None:
    if not runs:
        console.print("no runs yet")
        return
    table = Table(box=None, pad_edge=False)
    table.add_column("RUN", no_wrap=True, min_width=24)
    for column in ("WORKFLOW", "STATUS", "TASKS", "CREATED", "DURATION", "RULE"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for run in runs:
        duration = None
        if run.get("finished_at"):
            duration = (datetime.fromisoformat(run["finished_at"]) - datetime.fromisoformat(run["created_at"])
                        ).total_seconds()
        table.add_row(run["id"], run["workflow"], _status(run["status"]), f"{run['tasks_done']}/{run['tasks_total']}",
                      _when(run["created_at"]), _duration(duration), run["rule"])
    console.print(table)


def _held_events(run: dict[str, Any], shown: int = 10) -> str:
    """The events a hold gave a run (flow control), by event id and stream entry (`orch events show`)."""
    flow, held = run["flow"], run.get("events") or []
    ids = ", ".join(f"{e.get('id')} ({e.get('entry_id')})" for e in held[:shown])
    more = f", and {len(held) - shown} more" if len(held) > shown else ""
    return (f"  held      {flow.get('events')} event(s) by {flow.get('control')} of key {flow.get('key')!r}, "
            f"released ({flow.get('reason')}): {ids}{more}")


def print_run(run: dict[str, Any], max_items: int = 10) -> None:
    """A run, its tasks (items of a mapped task summarised beyond `max_items`) and earlier attempts."""
    console.print(f"[bold]run[/] {run['id']}  {_status(run['status'])}")
    console.print(f"  workflow  {run['workflow']} (version {run['version']})")
    console.print(f"  rule      {run['rule']}" + (f" (rule-set version {run['ruleset']})" if run.get("ruleset") else ""))
    if run.get("rerun_of"):
        console.print(f"  rerun of  {run['rerun_of']}")
    console.print(Text(f"  event     {run['event']['type']} id={run['event']['id']} source={run['event']['source']}"))
    if run.get("flow"):
        console.print(Text(_held_events(run)))
    console.print(Text(f"  params    {_short(run['params'], 100)}"))
    console.print(f"  created   {_when(run['created_at'])}   finished {_when(run['finished_at'])}   "
                  f"duration {_duration(run['duration_s'])}")
    if run.get("error"):
        console.print(Text("  error     ") + Text(run["error"], style="red"))
    for entry in run.get("steering", []):
        console.print(Text(f"  steered   {entry.get('action')} by {entry.get('by')} at {_when(entry.get('at'))}"))
    table = Table(box=None, pad_edge=False)
    for column in ("TASK", "STATE", "TRY", "AFTER", "QUEUED", "STARTED", "DURATION"):
        table.add_column(column, no_wrap=True)
    table.add_column("RESULT / ERROR", no_wrap=True, overflow="ellipsis")
    shown: dict[str, int] = {}
    hidden: dict[str, dict[str, int]] = {}
    for task in run["tasks"]:
        parent = task.get("parent")
        if parent is not None:
            shown[parent] = shown.get(parent, 0) + 1
            if shown[parent] > max_items and task["state"] not in ("failed", "retrying"):
                counts = hidden.setdefault(parent, {})
                counts[task["state"]] = counts.get(task["state"], 0) + 1
                continue
        table.add_row(*_task_cells(task))
    for parent, counts in hidden.items():
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        table.add_row(Text(f"{parent}[...]"), Text(f"{sum(counts.values())} more items: {summary}", style="dim"))
    console.print(table)
    _print_attempts(run)


def _task_cells(task: dict[str, Any]) -> list[Any]:
    outcome = task["error"].splitlines()[0] if task.get("error") else _short(task.get("result"))
    if task.get("items") is not None and task["state"] == "running":
        outcome = f"{task['items']} items"
    state = _status(task["state"])
    if task.get("retry_at"):
        state += f" (at {_when(task['retry_at'])})"
    return [Text(task["node"]), state, str(task["attempt"]), ",".join(task["upstream"]) or "-",
            _when(task["queued_at"]), _when(task["started_at"]), _duration(task["duration_s"]),
            Text(outcome, style="red" if task.get("error") else "")]


def _print_attempts(run: dict[str, Any]) -> None:
    with_history = [t for t in run["tasks"] if t.get("history")]
    if not with_history:
        return
    console.print("earlier attempts:")
    for task in with_history:
        for entry in task["history"]:
            if "reused_from" in entry:
                line = f"  {task['node']}: result reused from run {entry['reused_from']}"
            else:
                error = (entry.get("error") or "").strip().splitlines()
                line = (f"  {task['node']} #{entry['attempt']} {entry['state']} {_when(entry.get('finished_at'))}"
                        f" on {entry.get('worker') or '-'}: {error[0] if error else ''}")
            console.print(Text(line))


EVENT_COLUMNS = ("TIME", "TYPE", "SOURCE", "ID", "SUBJECT", "DATA")
_ESCAPES = {**{i: f"\\x{i:02x}" for i in range(32)}, 9: "\\t", 10: "\\n", 13: "\\r", 127: "\\x7f"}


def event_cells(event: dict[str, Any]) -> tuple[str, ...]:
    """One event as the cells of `orch events list` and the fields of an `orch events tail` line."""
    return (_when(event.get("time") or event.get("received_at")), str(event.get("type", "")),
            str(event.get("source", "")), str(event.get("id", "")), str(event.get("subject") or "-"),
            _short(event.get("data"), 50).translate(_ESCAPES))  # string data may hold newlines


def print_events(events: list[dict[str, Any]]) -> None:
    if not events:
        console.print("no events yet")
        return
    table = Table(box=None, pad_edge=False)
    for column in EVENT_COLUMNS[:-1]:
        table.add_column(column, no_wrap=True)
    table.add_column(EVENT_COLUMNS[-1], no_wrap=True, overflow="ellipsis")
    for event in events:
        table.add_row(*(Text(cell) for cell in event_cells(event)))  # Text: event data is never markup
    console.print(table)


def print_event_line(event: dict[str, Any]) -> None:
    """One event on one line, written at once (for `orch events tail`): the cells of `print_events`,
    padded to typical widths so that consecutive lines mostly align."""
    when, type_, source, event_id, subject, data = event_cells(event)
    _write_line(f"{when}  {type_:<20}  {source:<16}  {event_id:<32}  {subject}  {data}")


def print_json_line(value: Any) -> None:
    """`value` as one line of JSON (NDJSON), written at once."""
    _write_line(orjson.dumps(value).decode())


def _write_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
