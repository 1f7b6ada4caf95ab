"""Running one task in a forked child, for queues whose tasks need isolation (`--fork-queues`).

The child runs the entry point and exits (0: it returned, 1: it raised; the runner reported either
way). The parent waits on a pidfd, so a child is never polled, and kills it (SIGKILL) once it overruns
the task's timeout by FORK_GRACE_S, which lets the runner's own time limit report first. A child ignores
SIGINT and SIGTERM (the worker decides: finish, or kill it on a second signal) and dies with its parent
(PR_SET_PDEATHSIG), so a SIGKILLed worker never leaves a task running behind recover()'s back.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator import tracing

__all__ = ["FORK_GRACE_S", "ForkOutcome", "kill_current", "run_forked"]

log = logging.getLogger(__name__)

FORK_GRACE_S = 2.0
_PR_SET_PDEATHSIG = 1
_current: int | None = None


@dataclass(frozen=True)
class ForkOutcome:
    """How a forked task ended: `error` is None when it returned; `report` when its runner could not say."""

    error: str | None = None
    report: bool = False
    error_type: str = ""


def kill_current() -> None:
    """Kill the running child, if any (a worker's second stop signal)."""
    if _current is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(_current, signal.SIGKILL)


def run_forked(call: Callable[[], object], timeout_s: float) -> ForkOutcome:
    """Run `call` in a child process; wait for it at most `timeout_s` + FORK_GRACE_S."""
    global _current
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(call)
    _current = pid
    try:
        return _wait(pid, timeout_s + FORK_GRACE_S)
    finally:
        _current = None


def _child(call: Callable[[], object]) -> None:
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        call()
        code = 0
    except BaseException:  # noqa: B036 - the child must always reach os._exit
        with contextlib.suppress(Exception):
            log.debug("forked task raised:\n%s", traceback.format_exc())
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
            tracing.flush()  # os._exit skips atexit: the attempt's span goes out now or never
        os._exit(code)


def _wait(pid: int, limit_s: float) -> ForkOutcome:
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], limit_s)
        if not ready:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return ForkOutcome(f"TaskTimeout: the task's process was killed after {limit_s:.1f} s "
                               f"(its timeout plus {FORK_GRACE_S:.0f} s)", report=True, error_type="TaskTimeout")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        if code == 0:
            return ForkOutcome()
        if code == 1:
            return ForkOutcome("the task raised (its error is in its run)")
        return ForkOutcome(f"the task's process exited with code {code}", report=True, error_type="WorkerLost")
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    return ForkOutcome(f"the task's process was killed by signal {sig}", report=True, error_type="WorkerLost")
