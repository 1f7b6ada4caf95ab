"""An attempt's time limit and its cancellation, both delivered by SIGALRM, and never misdelivered.

`time_limit` stops Python code at the deadline by raising `TaskTimeout` from a SIGALRM handler, and
`interrupt` (the heartbeat thread, via `cancel_running`) makes the same handler raise `TaskCancelled`.
It works in the main thread only (where the worker runs tasks); elsewhere there is no in-process limit
and it says so in a log line. A task blocked in C code (a system call that retries, a C extension) does
not see the signal: only the worker supervisor killing the process stops it.

A SIGALRM can arrive when it no longer means anything: the timer of an attempt that has just ended, a
cancel sent a moment too late, a stray `kill -ALRM`. So the one handler, `_on_alarm`, trusts the state,
not the signal. It acts only while an attempt is *armed* (from `time_limit`'s entry to its exit), and
raises `TaskCancelled` if that attempt was cancelled or `TaskTimeout` if its deadline has passed;
otherwise it returns. Handlers run in the main thread between bytecodes, the thread that arms and
disarms, so reading that state there is race-free. An arming raises at most once (the handler disarms
it first), so a second signal while the exception unwinds cannot raise it again elsewhere.

Where the handler lives:

- a fast worker installs it for its whole life (`handling_alarms` in `FastWorker.run`): there is never a
  moment with SIG_DFL (a stray signal would kill the worker) or another attempt's handler in place;
- elsewhere (`run_task` in tests, RQ's SimpleWorker with its own SIGALRM handler around each job),
  `time_limit` swaps it in, and puts the previous handler and the rest of its timer back on exit. Then
  a late signal would reach that previous handler: so `interrupt` signals under a lock that the exit
  takes too, and only while the attempt is armed; a signal it sent is handled before the swap back.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from orchestrator.context import TaskCancelled, TaskTimeout

if TYPE_CHECKING:
    from signal import _HANDLER

    from .attempt import Attempt

__all__ = ["handling_alarms", "interrupt", "time_limit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Arming:
    """One armed time limit: what it stops, by when, and the one it is nested in (if any)."""

    what: str
    seconds: float
    deadline: float  # time.monotonic()
    attempt: Attempt | None
    outer: _Arming | None


_armed: _Arming | None = None  # written in the main thread only (its handler included); `interrupt` reads it
_signalling = threading.Lock()  # `interrupt` holds it from its check to its signal; an exit, to swap back


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    """The one SIGALRM handler: raise in the armed attempt if it is cancelled or overdue, else ignore."""
    global _armed
    armed = _armed
    if armed is None:
        return
    attempt = armed.attempt
    if attempt is not None and attempt.cancelled.is_set():
        _armed = armed.outer
        reason = (attempt.cancel_reason or ["its run was cancelled"])[0]
        raise TaskCancelled(f"{armed.what} was stopped: {reason}")
    if time.monotonic() >= armed.deadline:  # timers never fire early; the deadline was read before setting it
        _armed = armed.outer
        raise TaskTimeout(f"{armed.what} exceeded its time limit of {armed.seconds:g}s")


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _put_back(previous: _HANDLER) -> None:
    signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)


@contextmanager
def handling_alarms() -> Iterator[None]:
    """Keep `_on_alarm` installed for the block (a worker's life), then put the previous handler back.

    Main thread only (signal handlers can be set nowhere else); a no-op elsewhere.
    """
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        yield
    finally:
        _put_back(previous)


def interrupt(attempt: Attempt) -> None:
    """Make the main thread's SIGALRM handler look at `attempt` now, if it is still armed (any thread).

    The caller sets `attempt.cancelled` first; the handler raises `TaskCancelled` from it.
    """
    if not _arms(attempt):  # the common case never takes the lock: no fork between attempts copies it held
        return
    with _signalling:
        if _arms(attempt):
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)


def _arms(attempt: Attempt) -> bool:
    armed = _armed  # once: the main thread may change it meanwhile
    return armed is not None and armed.attempt is attempt


@contextmanager
def time_limit(seconds: float | None, what: str, attempt: Attempt | None = None) -> Iterator[None]:
    """Raise TaskTimeout in this thread after `seconds` (main thread only; a no-op elsewhere).

    With `attempt`, raise TaskCancelled instead once it is cancelled (see `interrupt`). A handler swapped
    in for the block and the timer it had (RQ's job timeout, pytest-timeout) are put back afterwards, the
    timer less the time spent here.
    """
    if seconds is None:
        yield
        return
    if not _in_main_thread():
        log.warning("%s: runs outside the main thread, so its %ss time limit is not enforced in-process "
                    "(only the worker supervisor stops it)", what, seconds)
        yield
        return
    global _armed
    swapped = signal.getsignal(signal.SIGALRM) is not _on_alarm
    previous = signal.signal(signal.SIGALRM, _on_alarm) if swapped else None
    started = time.monotonic()
    arming = _Arming(what, seconds, started + seconds, attempt, _armed)
    outer_s, _ = signal.getitimer(signal.ITIMER_REAL)
    try:
        _armed = arming
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
        yield
    finally:
        _armed = arming.outer  # first: from here on any SIGALRM is stray, whatever it was sent for
        with _signalling:
            # A system call: a signal `interrupt` sent before we got the lock is delivered on its return,
            # and signal.signal runs the pending handler (ours, now a no-op) before it swaps.
            signal.setitimer(signal.ITIMER_REAL, 0)
            if swapped:
                _put_back(previous)
        if outer_s > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer_s - (time.monotonic() - started), 0.001))
