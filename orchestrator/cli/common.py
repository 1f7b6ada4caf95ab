"""Pieces every command shares: the --project option, settings, logging, and error reporting."""

from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import ConfigError, OrchestratorError
from ..logsetup import setup_logging
from ..settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["die_with_parent", "fail", "freeze_heap", "handle_errors", "make_settings", "project_option", "setup_logging"]


def project_option(fn: F) -> F:
    """Add `--project DIR` (default: ORCH_PROJECT, else the current directory)."""
    return click.option("--project", "-p", type=click.Path(file_okay=False, path_type=str), default=None,
                        help="Automation project directory (rules/, workflows/). Env: ORCH_PROJECT.")(fn)


def make_settings(project: str | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, with the flags the user gave taking precedence."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if project is not None:
        given["project"] = project
    return Settings(**given)


def fail(message: str, code: int = 1) -> None:
    """Print `message` as an error and exit."""
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)
    raise SystemExit(code)


def handle_errors(fn: F) -> F:
    """Turn orch's own errors into a one-line message (one per issue for ConfigError) and exit code 1."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            click.echo(click.style("error: ", fg="red", bold=True) + "the project has problems:", err=True)
            for issue in exc.issues:
                click.echo(f"  {issue}", err=True)
            raise SystemExit(1) from None
        except OrchestratorError as exc:
            fail(str(exc))
    return wrapper  # type: ignore[return-value]


def reader_gone() -> None:
    """Stdout's reader went away (e.g. `| head`): point stdout at /dev/null so the final flush is silent."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


ORPHAN_GRACE_S = 10.0  # how long a process whose supervisor died may take to stop on its own


def die_with_parent() -> None:
    """When a supervisor (`orch dev`, a worker pool, `orch api --workers`) started this process, stop with
    it even if it is killed (Linux): its death sends us SIGTERM, the graceful stop. Should that stop hang
    (a task that will not finish, a wait on a Redis that is going away with it), a watchdog ends the
    process ORPHAN_GRACE_S later: nothing may outlive its supervisor for long, and whatever it held is
    handed back by recover() as after any crash."""
    parent = os.environ.get("ORCH_DEV_PARENT_PID")
    if not parent:
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        return
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        raise SystemExit(0)
    threading.Thread(target=_orphan_watchdog, args=(int(parent),), name="orphan-watchdog", daemon=True).start()


def _orphan_watchdog(parent: int, poll_s: float = 0.5) -> None:
    while os.getppid() == parent:
        time.sleep(poll_s)
    time.sleep(ORPHAN_GRACE_S)
    logging.getLogger(__name__).error("the supervising process %d died and this process did not stop within "
                                      "%.0f s of it; exiting at once", parent, ORPHAN_GRACE_S)
    os._exit(1)


def freeze_heap() -> None:
    """Put what a long-running role has loaded by now (modules, the project, its clients) out of the cyclic
    garbage collector's reach, just before its loop starts. Otherwise every full collection walks that
    whole heap again: the engine spent a fifth of its CPU per run there, and the commit that expands a
    10,000-item fan-out 40% of its time (the first item waits for it)."""
    gc.collect()
    gc.freeze()
