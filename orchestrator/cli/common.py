"""Pieces every command shares: the --project option, settings, logging, and error reporting."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import ConfigError, OrchestratorError
from ..logsetup import lean_records, setup_logging
from ..settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["die_with_parent", "fail", "freeze_heap", "handle_errors", "make_settings", "project_option", "setup_logging", "tune_engine"]


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


ORPHAN_GRACE_S = 10.0  # how long a process may outlive the `orch dev` that started it (or its pool)


def die_with_parent() -> None:
    """When a supervisor (`orch dev`, a worker pool, `orch api --workers`) started this process, stop with
    it even if it is killed (Linux): its death sends us SIGTERM, the graceful stop. Under `orch dev`
    (ORCH_DEV_ROOT_PID, inherited by grandchildren such as a pool's workers) a watchdog also ends the
    process ORPHAN_GRACE_S after `orch dev` itself died, should that stop hang: nothing it started may
    outlive it for long. A pool or API supervisor run on its own keeps the graceful stop alone, so a
    worker whose pool crashed still finishes its task."""
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
    root = os.environ.get("ORCH_DEV_ROOT_PID", "")
    if root.isdigit():
        threading.Thread(target=_orphan_watchdog, args=(int(root),), name="orphan-watchdog", daemon=True).start()


def _orphan_watchdog(root: int) -> None:
    try:
        handle = os.pidfd_open(root)  # a handle on that very process: no pid reuse can fool it
    except ProcessLookupError:
        handle = None  # already gone
    except OSError:
        return  # no pidfd (Linux < 5.3): SIGTERM from the parent is all there is
    if handle is not None:
        select.select([handle], [], [])  # readable once the process has exited
        os.close(handle)
    time.sleep(ORPHAN_GRACE_S)
    with contextlib.suppress(OSError):  # not logging: its lock may be held by a thread stuck writing
        os.write(2, f"orch dev (pid {root}) died and this process did not stop within {ORPHAN_GRACE_S:.0f} s; "
                    "exiting at once\n".encode())
    os._exit(1)


GC_THRESHOLDS = (50_000, 20, 10)  # young collections after 50,000 net allocations, not Python's 700


def freeze_heap() -> None:
    """Put what a long-running role has loaded by now (modules, the project, its clients) out of the cyclic
    garbage collector's reach, just before its loop starts. Otherwise every full collection walks that
    whole heap again: the engine spent a fifth of its CPU per run there, and the commit that expands a
    10,000-item fan-out 40% of its time (the first item waits for it)."""
    gc.collect()
    gc.freeze()


def tune_engine() -> None:
    """What the engine's process does differently: lean log records (logsetup.lean_records: a line or two per
    run), and garbage collection less often (GC_THRESHOLDS): a batch of 500 runs makes and drops
    hundreds of thousands of objects, nearly all freed by their reference counts, but at Python's 700 the
    collector walked the ones still alive over 500 times per 3,000 runs: 6% of the engine's CPU per run,
    0.6% at 50,000. Cycles are still collected, a few MB of allocations later. Not in workers: their tasks'
    cycles (tracebacks, frames holding large buffers) are freed at Python's pace."""
    lean_records()
    gc.set_threshold(*GC_THRESHOLDS)
