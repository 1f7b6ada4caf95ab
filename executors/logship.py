"""⑥ Shipping running attempts' log lines to Redis, from a thread of their own, while they run.

    shipper = LogShipper(client, keys, cap=LogCap(...), ttl_s=...)
    buffer = shipper.open(run, node, attempt)   # the attempt's LogBuffer: its logger, prints and output
    ...                                         # every FLUSH_EVERY_S (or FLUSH_LINES lines) the thread ships
    shipper.close(buffer)                       # the rest, before the attempt's record is reported, and
                                                # the log marked closed (readers know no more lines come)

One thread per process ships every open buffer: the task's own thread only appends to memory, so a
slow or absent Redis never blocks or fails a task. A batch Redis refused goes back into its buffer (which
stays within the caps, the oldest lines dropped and counted) and is tried again at the next period; a
warning is logged once per outage. `close` ships what is left from the caller's thread, after any ship in
progress for that buffer (so lines stay in order), and never raises: a log is worth less than the
attempt's result (what Redis refuses then is lost, and the warning says so).

The thread starts when a buffer is opened and none runs, and ends after a period with no buffer open; a
forked child (`--fork-queues`) starts its own, since a fork copies no threads.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

import redis

from orchestrator.state import logs
from orchestrator.state.keys import Keys
from orchestrator.state.logs import LogCap

from .logbuffer import LogBuffer

__all__ = ["FLUSH_EVERY_S", "LogShipper"]

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 0.5


@dataclass(eq=False)
class _Open:
    """One attempt's buffer and where it goes; `lock` keeps its batches in order."""

    run: str
    node: str
    attempt: int
    buffer: LogBuffer
    lock: threading.Lock = field(default_factory=threading.Lock)


class LogShipper:
    """Ships the buffers of the attempts running in this process; see the module docstring."""

    def __init__(self, client: redis.Redis, keys: Keys, *, cap: LogCap, ttl_s: int,
                 every_s: float = FLUSH_EVERY_S) -> None:
        self._client, self._keys, self.cap, self._ttl_s, self._every_s = client, keys, cap, ttl_s, every_s
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._open: dict[LogBuffer, _Open] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def open(self, run: str, node: str, attempt: int) -> LogBuffer:
        """A buffer for this attempt's lines, shipped from now on until `close`."""
        if self._pid != os.getpid():  # a forked child: the parent's thread and locks are not ours
            self._start()
        buffer = LogBuffer.capped(self.cap, on_full=self._wake.set)
        with self._lock:
            self._open[buffer] = _Open(run, node, attempt, buffer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="orch-log-shipper", daemon=True)
                self._thread.start()
        return buffer

    def close(self, buffer: LogBuffer) -> None:
        """Ship what is left of `buffer`, now, and stop shipping it."""
        with self._lock:
            entry = self._open.pop(buffer, None)
        if entry is not None:
            self._ship(entry, closing=True)

    def attempts_open(self) -> list[tuple[str, str, int]]:
        """The (run, node, attempt) of each buffer still shipped: those opened and not closed yet."""
        with self._lock:
            return [(entry.run, entry.node, entry.attempt) for entry in self._open.values()]

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._every_s)
            self._wake.clear()
            with self._lock:
                entries = list(self._open.values())
                if not entries:  # idle: the next `open` starts another
                    self._thread = None
                    return
            for entry in entries:
                self._ship(entry)

    def _ship(self, entry: _Open, closing: bool = False) -> None:
        """Ship the buffer's lines; `closing`: the last of them, marking the log closed. With no line left to
        ship, nothing is sent, so a task that logs nothing costs no command: an attempt that fails (a cancel or
        a timeout too) always ends with its error line, which carries the mark followers wait for."""
        with entry.lock:
            batch = entry.buffer.take()
            if not batch:
                return
            try:
                logs.append(self._client, self._keys, entry.run, entry.node, entry.attempt, batch.lines,
                            cap=self.cap, ttl_s=self._ttl_s, dropped=batch.dropped, dropped_bytes=batch.dropped_bytes,
                            closed=closing)
            except redis.RedisError as exc:
                entry.buffer.put_back(batch)
                self._warn(exc)
                return
        self._failing = False

    def _warn(self, exc: Exception) -> None:
        if not self._failing:
            self._failing = True
            log.warning("task logs cannot be written to Redis (%s: %s); they wait in memory (the newest %d lines) "
                        "and are tried again", type(exc).__name__, exc, self.cap.max_lines)
