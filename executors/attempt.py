"""⑥ Around each task attempt: its context, its captured logs and its time limit.

`attempt_scope` makes the attempt's `TaskContext` current (`orchestrator.context.current()`), sets the
causation (`orchrun` / `orchtask` on emitted events), and captures into the attempt's `LogBuffer`:

- every line of the context's `logger` (INFO and above), from any thread;
- the records of any other logger that reach the root logger while the task runs in this context
  (its own thread and the coroutines it awaits), e.g. `logging.getLogger(__name__)` in a task module;
- what the task prints to stdout / stderr, when it runs in the main thread (they are swapped for the
  attempt; the worker's own output is unchanged).

The buffer (logbuffer.py) holds lines until the worker's shipper (logship.py) writes them to the attempt's
log in Redis, while the attempt runs.

With `limit`, the attempt runs under its time limit (`executors/alarm.py`: SIGALRM, main thread only),
and `cancel_running` (the heartbeat thread) stops it there too.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

from orchestrator.context import TASK_LOGGER, TaskContext, use
from orchestrator.events.causation import caused_by

from .alarm import interrupt, time_limit
from .kinds.egress import EgressPolicy
from .logbuffer import MAX_LINE_CHARS, LogBuffer

__all__ = ["Attempt", "LogBuffer", "attempt_scope", "log_line", "task_logger", "time_limit"]

log = logging.getLogger(__name__)

FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
_LINE = logging.Formatter(FORMAT, "%H:%M:%S")


def log_line(level: int, name: str, message: str) -> str:
    """`message` as a captured line of logger `name` looks in an attempt's log (the worker's own notes)."""
    return _LINE.format(logging.LogRecord(name, level, "", 0, message, None, None))


@dataclass(frozen=True)
class Attempt:
    """One task attempt as the worker runs it: the payload's fields, resolved, and where its logs go."""

    ctx: TaskContext
    kind: str
    args: list[Any]
    kwargs: dict[str, Any]
    timeout_s: float
    logs: LogBuffer
    cancelled: threading.Event = field(default_factory=threading.Event)
    cancel_reason: list[str] = field(default_factory=list)
    egress: EgressPolicy = field(default_factory=EgressPolicy.default)


_running: Attempt | None = None  # the attempt this process runs now (one at a time per worker process)


def cancel_running(run_id: str, reason: str, node: str | None = None, attempt_no: int | None = None) -> bool:
    """Stop the running attempt if it belongs to `run_id` (and is `node`'s attempt `attempt_no`, when given:
    the heartbeat says which attempt it saw cancelled, and another may have started since); True the first
    time only.

    The heartbeat thread calls it on every beat while the run stays cancelled, and each call signals
    again while the attempt runs under its limit: a signal that lands just before a blocking call starts
    (time.sleep) is only seen when that call returns, so the next one is what stops it.
    """
    attempt = _running
    if attempt is None or attempt.ctx.run_id != run_id:
        return False
    if (node, attempt_no) != (None, None) and (attempt.ctx.node, attempt.ctx.attempt) != (node, attempt_no):
        return False
    first = not attempt.cancelled.is_set()
    if first:
        attempt.cancel_reason.append(reason)  # read by the SIGALRM handler and the shell kind
        attempt.cancelled.set()
    interrupt(attempt)  # if its time limit is armed; a kind enforcing its own limit polls `cancelled`
    return first


def stop_cancelled(run_id: str, node: str, attempt_no: int) -> None:
    """The heartbeat's `on_cancel`, in either worker engine: it saw this attempt's run cancelled; stop the
    attempt, if it is still the one running."""
    if cancel_running(run_id, "its run was cancelled or timed out", node, attempt_no):
        log.info("run %s was cancelled: stopping its running task", run_id)


_capturing: ContextVar[LogBuffer | None] = ContextVar("orch_log_capture", default=None)


class _BufferHandler(logging.Handler):
    """Writes records to one attempt's buffer (attached to that attempt's task logger)."""

    def __init__(self, buffer: LogBuffer) -> None:
        super().__init__()
        self.buffer = buffer
        self.setFormatter(_LINE)

    def emit(self, record: logging.LogRecord) -> None:
        record.orch_captured = True  # the root handler below must not add it a second time
        self.buffer.add(self.format(record))


class _ContextHandler(logging.Handler):
    """On the root logger: records logged in an attempt's context go to that attempt's buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(_LINE)

    def emit(self, record: logging.LogRecord) -> None:
        buffer = _capturing.get()
        if buffer is not None and not getattr(record, "orch_captured", False):
            buffer.add(self.format(record))


_root_handler: _ContextHandler | None = None
_root_lock = threading.Lock()


def _install_root_handler() -> None:
    # Installed on first use, not at import: the worker has configured logging by then (basicConfig
    # does nothing once the root logger has a handler).
    global _root_handler
    with _root_lock:
        if _root_handler is None:
            _root_handler = _ContextHandler()
            logging.getLogger().addHandler(_root_handler)


def task_logger(workflow: str, node: str, buffer: LogBuffer) -> logging.Logger:
    """A logger of its own for one attempt, `orch.task.<workflow>.<node>`, writing to `buffer`.

    It is not registered with `logging.getLogger` (so two attempts of the same task in two threads
    never share handlers, and it is garbage once the attempt ends); it propagates to `orch.task`.
    """
    logger = logging.Logger(f"{TASK_LOGGER}.{workflow}.{node}", logging.INFO)
    logger.parent = logging.getLogger(TASK_LOGGER)
    logger.addHandler(_BufferHandler(buffer))
    return logger


class _Tee(io.TextIOBase):
    """A stdout / stderr that still writes to the original and also captures whole lines."""

    def __init__(self, original: TextIO, buffer: LogBuffer, label: str) -> None:
        self.original, self.buffer, self.label = original, buffer, label
        self._partial = ""

    def write(self, text: str) -> int:
        written = self.original.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.buffer.add(f"{self.label}: {line}")
        if len(self._partial) > MAX_LINE_CHARS:
            self.buffer.add(f"{self.label}: {self._partial}")
            self._partial = ""
        return written

    def flush(self) -> None:
        self.original.flush()

    def close_capture(self) -> None:
        if self._partial:
            self.buffer.add(f"{self.label}: {self._partial}")
            self._partial = ""

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.original.encoding

    def isatty(self) -> bool:
        return self.original.isatty()


@contextmanager
def _capture_output(buffer: LogBuffer) -> Iterator[None]:
    if sys.stdout is None or sys.stderr is None:  # no console at all (a daemonized worker): nothing to tee
        yield
        return
    out, err = _Tee(sys.stdout, buffer, "stdout"), _Tee(sys.stderr, buffer, "stderr")
    sys.stdout, sys.stderr = cast(TextIO, out), cast(TextIO, err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out.original, err.original
        out.close_capture()
        err.close_capture()


def _forget(attempt: Attempt) -> None:
    global _running
    if _running is attempt:
        _running = None


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def attempt_scope(attempt: Attempt, *, limit: bool) -> Iterator[None]:
    """Run the block as `attempt`: its context current, its cause set, its output captured.

    With `limit`, Python code in the block is also stopped at the attempt's time limit (kinds that
    enforce their own limit, like shell, pass False).
    """
    ctx = attempt.ctx
    _install_root_handler()
    with ExitStack() as stack:
        stack.enter_context(use(ctx))
        stack.enter_context(caused_by(ctx.run_id, ctx.node, ctx.trace))
        token = _capturing.set(attempt.logs)
        stack.callback(_capturing.reset, token)
        if _in_main_thread():
            stack.enter_context(_capture_output(attempt.logs))
        if limit:
            stack.enter_context(time_limit(attempt.timeout_s, f"task {ctx.node!r}", attempt))
        global _running
        _running = attempt  # after its limit is armed, so a cancel that finds it can interrupt it
        stack.callback(_forget, attempt)
        yield
