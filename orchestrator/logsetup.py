"""How orch processes log: text lines for people, or JSON lines for log shippers (`ORCH_LOG_FORMAT=json`).

    {"time": "2026-11-30T09:04:19.123456+00:00", "level": "INFO", "logger": "orchestrator.engine.loop",
     "message": "run 4e5c… started: …", "run": "4e5cb085dd0a78f467d56120"}

Each JSON line names the run, task (the node) and attempt where there is one:

- a record logged while a task attempt runs (in its thread, or coroutines it awaits) gets all three from
  the attempt's context (`orchestrator.context`), by the `AttemptFields` filter on the handler;
- code that logs about a run elsewhere (the engine) passes them: `log.info("...", extra=about(run.id))`.

Every `orch` process sets this up once, at its start (`setup_logging`, called by the CLI's commands).
The JSON lines carry no other extra fields, so what libraries attach to records never leaks out.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

from pythonjsonlogger.orjson import OrjsonFormatter

from .context import active

__all__ = ["AttemptFields", "JsonLines", "about", "lean_records", "one_write", "setup_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"
_NOISY = ("rq.worker", "rq.queue", "uvicorn.access", "watchfiles.main")
_FIELDS = ("time", "level", "logger", "message", "run", "task", "attempt", "exc_info", "stack_info")


def about(run: str, task: str | None = None, attempt: int | None = None) -> dict[str, Any]:
    """`extra=` naming what a record is about, for records logged outside a task attempt (the engine)."""
    return {"run": run, **({"task": task} if task is not None else {}),
            **({"attempt": attempt} if attempt is not None else {})}


class AttemptFields(logging.Filter):
    """Adds the running attempt's run, task and attempt to records that do not name a run already."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "run", None) is None:
            ctx = active()
            if ctx is not None and ctx.run_id:
                record.run, record.task, record.attempt = ctx.run_id, ctx.node, ctx.attempt
        return True


class JsonLines(OrjsonFormatter):
    """One JSON object per record: time (UTC), level, logger, message, run/task/attempt when known, and the
    traceback (`exc_info`) of a record that has one."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s", timestamp="time",
                         rename_fields={"levelname": "level", "name": "logger"})

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {name: log_data[name] for name in _FIELDS if log_data.get(name) is not None}


class TextLines(logging.Formatter):
    """TEXT_FORMAT, its time made into text once per second (strftime was a fifth of a record's cost)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT, "%H:%M:%S")
        self._second, self._text = -1, ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        second = int(record.created)
        if second != self._second:  # formatters run under their handler's lock
            self._second, self._text = second, super().formatTime(record, datefmt)
        return self._text


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log records of `level` and above to stderr, as `fmt` says ("text" or "json"); once per process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if fmt == "json" else TextLines())
    handler.addFilter(AttemptFields())
    logging.basicConfig(level=level, handlers=[handler])
    if level != "DEBUG":
        for noisy in _NOISY:
            logging.getLogger(noisy).setLevel(logging.WARNING)


def lean_records() -> None:
    """Make records without their thread and process, which orch's formats never show: 1.5 us less per record
    (of 9), for a process that logs a line per run (the engine). These are switches of the logging HOWTO's
    "Optimization" section (not its `_srcfile` one: the caller's frame gives `stack_info`)."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


@contextlib.contextmanager
def one_write() -> Iterator[None]:
    """The records logged inside go out in one write to each stream handler's stream at the end, not one
    write (and flush) each: for a loop that logs a line per item, like the engine's per run it changed.
    Records other threads log meanwhile go out with them. A stream that cannot be flushed or written is
    left alone, as a handler's own error handling would. One caller batches at a time: another thread's
    `one_write` meanwhile (two engines in one process) logs into the same buffer, or as usual once it is out;
    swapping streams in both could leave the handler writing into a buffer nobody empties."""
    if not _BATCHING.acquire(blocking=False):
        yield
        return
    try:
        with _buffered():
            yield
    finally:
        _BATCHING.release()


_BATCHING = threading.Lock()


@contextlib.contextmanager
def _buffered() -> Iterator[None]:
    held = []
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            with contextlib.suppress(OSError, ValueError):  # setStream flushes the stream it replaces
                held.append((handler, handler.setStream(io.StringIO())))
    try:
        yield
    finally:
        for handler, stream in held:
            with handler.lock or contextlib.nullcontext():  # no other record between the buffer and the rest
                buffer, handler.stream = handler.stream, stream
                text = buffer.getvalue() if isinstance(buffer, io.StringIO) else ""
                if text and stream is not None:
                    with contextlib.suppress(OSError, ValueError):
                        stream.write(text)
                        stream.flush()
