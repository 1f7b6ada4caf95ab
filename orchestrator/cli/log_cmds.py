"""`orch runs logs RUN [--task T] [--attempt N] [--skip K] [--follow] [--json]`: a run's task logs, or followed live.

Each line is prefixed with its task and attempt (`charge#2 | ...`); control characters in lines (task
output is untrusted) are shown escaped, never sent to the terminal. With --follow, progress (a task's
new state or attempt, the run's end) goes to stderr, so stdout holds only log lines; so does the line saying
which attempts a bounded read left out (workflows/logs.py: 100 attempts, 4 MiB of lines).
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

import click
import redis

from ..connection import connect
from ..state.keys import Keys
from ..state.logs import AttemptLog
from ..workflows.logs import (
    FOLLOW_POLL_S,
    End,
    Lines,
    LogFollower,
    LogsNotFound,
    Notice,
    TaskProgress,
    read_logs,
)
from .common import fail, handle_errors, make_settings, project_option, reader_gone

__all__ = ["add_log_commands"]

_ESCAPES = {**{i: f"\\x{i:02x}" for i in range(32) if i != 9}, 127: "\\x7f"}
_RETRY_S = 2.0


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _lines(log: AttemptLog) -> str:
    prefix = click.style(f"{log.node}#{log.attempt} |", dim=True) if sys.stdout.isatty() else f"{log.node}#{log.attempt} |"
    return "".join(f"{prefix} {line.translate(_ESCAPES)}\n" for line in log.text())


def _progress(item: TaskProgress | Notice | End, run_id: str) -> None:
    if isinstance(item, Notice):
        click.echo(f"-- {item.text.replace('task=', '--task').replace('skip=', '--skip ')}", err=True)
    elif isinstance(item, TaskProgress):
        click.echo(f"-- {item.node}#{item.attempt} {item.state}", err=True)
    else:
        took = f" in {item.duration_s:.1f} s" if item.duration_s is not None else ""
        click.echo(f"-- run {run_id} {item.status}{took}", err=True)


def _json_event(item: Lines | TaskProgress | Notice | End) -> dict[str, Any]:
    if isinstance(item, Lines):
        return {"event": "lines", **item.log.to_dict()}
    if isinstance(item, Notice):
        return {"event": "notice", "notice": item.text, "omitted": {"attempts": item.omitted}}
    if isinstance(item, TaskProgress):
        return {"event": "task", "task": item.node, "attempt": item.attempt, "state": item.state}
    return {"event": "end", "status": item.status, "duration_s": item.duration_s}


def _follow(client: Any, keys: Keys, follower: LogFollower, as_json: bool) -> None:
    from .output import print_json_line

    failing = False
    while not follower.ended:
        try:
            news = follower.poll(client, keys)
            failing = False
        except LogsNotFound as exc:
            fail(str(exc))
            return
        except redis.RedisError as exc:
            if not failing:
                click.echo(f"Redis unavailable ({str(exc).rstrip('.')}); retrying every {_RETRY_S:g} s", err=True)
            failing = True
            time.sleep(_RETRY_S)
            continue
        for item in news:
            if as_json:
                print_json_line(_json_event(item))
            elif isinstance(item, Lines):
                _write(_lines(item.log))
            else:
                _progress(item, follower.run_id)
        if not follower.ended:
            time.sleep(FOLLOW_POLL_S)


def _print_once(client: Any, keys: Keys, run_id: str, task: str | None, attempt: int | None, skip: int,
                as_json: bool) -> None:
    from .output import print_json

    try:
        found = read_logs(client, keys, run_id, task, attempt, skip=skip)
    except LogsNotFound as exc:
        fail(str(exc))
        return
    if as_json:
        print_json(found.to_dict())
        return
    text = "".join(_lines(log) for log in found.attempts)
    _write(text)
    if found.omitted:
        click.echo(f"-- {found.omitted.hint(skip='--skip ', task='--task', attempt='--attempt')}", err=True)
    if not text:
        running = found.status in ("queued", "running")
        started = "no task has started" if not found.attempts else "no log lines"
        click.echo(f"run {found.run} ({found.status}): {started}{' yet' if running else ''}", err=True)


def add_log_commands(runs: click.Group) -> None:
    @runs.command("logs")
    @click.argument("run_id")
    @click.option("--task", "-t", default=None, help="Only this task (a mapped task: each of its items).")
    @click.option("--attempt", "-a", type=click.IntRange(min=1), default=None,
                  help="This attempt (default: each task's latest).")
    @click.option("--skip", type=click.IntRange(min=0), default=0,
                  help="Start at this attempt of those asked for (one read shows at most 100).")
    @click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the run ends (Ctrl-C stops).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON (with --follow: one event per line).")
    @project_option
    @handle_errors
    def runs_logs(run_id: str, task: str | None, attempt: int | None, skip: int, follow: bool, as_json: bool,
                  project: str | None) -> None:
        """A run's task logs: every task's latest attempt, each line prefixed with TASK#ATTEMPT."""
        settings = make_settings(project)
        client, keys = connect(settings), Keys(settings.key_prefix)
        try:
            if not follow:
                _print_once(client, keys, run_id, task, attempt, skip, as_json)
                return
            signal.signal(signal.SIGTERM, _interrupted)
            _follow(client, keys, LogFollower(run_id, task, attempt, skip=skip), as_json)
        except KeyboardInterrupt:
            pass
        except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
            reader_gone()
        finally:
            client.close()


def _interrupted(*_: Any) -> None:
    raise KeyboardInterrupt
