"""⑥ One attempt's log lines on their way to Redis: a bounded, thread-safe buffer.

Every source of an attempt's lines (its logger, the root logger in its context, its prints, a shell
command's output) calls `add` from whatever thread it runs in; `add` only takes a short lock, never
waits for Redis. The shipper (logship.py) drains the buffer with `take` from its own thread, and puts a
batch back with `put_back` when Redis refused it, so lines wait for the next try.

While lines wait, the buffer keeps the newest within the same caps as the stored log: when Redis is slow
or away, the oldest waiting lines go and are counted (`Batch.dropped`), and the stored log's marker
counts them with the others. A line longer than MAX_LINE_CHARS is cut, saying by how much.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.settings import TASK_LOG_MAX_BYTES, TASK_LOG_MAX_LINES
from orchestrator.state.logs import LogCap

__all__ = ["FLUSH_LINES", "MAX_LINE_CHARS", "Batch", "LogBuffer"]

MAX_LINE_CHARS = 4096
FLUSH_LINES = 200  # this many waiting lines wake the shipper before its period is over


def _size(line: str) -> int:
    return len(line.encode("utf-8", "replace")) + 1


@dataclass
class Batch:
    """Lines taken to be shipped, and the lines (and bytes) dropped before they could be."""

    lines: list[str] = field(default_factory=list)
    dropped: int = 0
    dropped_bytes: int = 0

    def __bool__(self) -> bool:
        return bool(self.lines or self.dropped)


class LogBuffer:
    """The lines of one attempt not yet shipped, the newest within `max_lines` and `max_bytes`."""

    def __init__(self, max_lines: int = TASK_LOG_MAX_LINES, max_bytes: int = TASK_LOG_MAX_BYTES,
                 on_full: Callable[[], None] | None = None) -> None:
        self.max_lines, self.max_bytes = max_lines, max_bytes
        self._on_full = on_full
        self._lines: deque[str] = deque()
        self._bytes = 0
        self._dropped = self._dropped_bytes = 0
        self._lock = threading.Lock()

    @classmethod
    def capped(cls, cap: LogCap, on_full: Callable[[], None] | None = None) -> LogBuffer:
        return cls(cap.max_lines, cap.max_bytes, on_full)

    def add(self, text: str) -> None:
        """Append `text`, one line per line in it; the oldest waiting lines go when a bound is passed."""
        with self._lock:
            for line in text.splitlines() or [""]:
                if len(line) > MAX_LINE_CHARS:
                    line = line[:MAX_LINE_CHARS] + f"… ({len(line) - MAX_LINE_CHARS} more characters)"
                self._lines.append(line)
                self._bytes += _size(line)
            self._trim()
            full = len(self._lines) >= FLUSH_LINES
        if full and self._on_full is not None:
            self._on_full()

    def _trim(self) -> None:
        while self._lines and (len(self._lines) > self.max_lines or self._bytes > self.max_bytes):
            line = self._lines.popleft()
            self._bytes -= _size(line)
            self._dropped += 1
            self._dropped_bytes += _size(line) - 1

    def take(self) -> Batch:
        """Every waiting line, and what was dropped before; the buffer is empty afterwards."""
        with self._lock:
            batch = Batch(list(self._lines), self._dropped, self._dropped_bytes)
            self._lines.clear()
            self._bytes = self._dropped = self._dropped_bytes = 0
            return batch

    def put_back(self, batch: Batch) -> None:
        """Return a batch that could not be shipped, before the lines added since (the bounds still hold)."""
        with self._lock:
            self._lines.extendleft(reversed(batch.lines))
            self._bytes += sum(_size(line) for line in batch.lines)
            self._dropped += batch.dropped
            self._dropped_bytes += batch.dropped_bytes
            self._trim()

    def lines(self) -> list[str]:
        """The waiting lines (all of them when nothing ships them), after a note when earlier ones were dropped."""
        with self._lock:
            note = [f"… {self._dropped} earlier line(s) dropped"] if self._dropped else []
            return note + list(self._lines)
