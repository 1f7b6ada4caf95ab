"""Task attempts' logs in Redis: one list per (run, node, attempt), capped, expiring with its run.

    <p>:log:<run>:<node>:<attempt>    [JSON header, line, line, ...]

The worker running an attempt appends its lines while it runs (`append`, through append_log.lua): the
newest lines are kept within `LogCap` (lines and bytes); older ones go, and the header counts them, so
every reader shows a marker saying how much was dropped (`AttemptLog.truncated`) and numbers lines
across drops: a reader that has read `n` lines of an attempt asks for the lines after `n` (`read`,
through read_log.lua, which reads header and lines at once) and gets each line once, or a marker for
those dropped before it read them. One `read` returns at most `max_bytes` of lines (whole attempts, in
order: the attempts after the budget ran out are left for the caller to ask again), in script calls of at
most READ_CHUNK attempts, each reply within the budget too. The worker's last append closes the log
(`closed` in the header, `AttemptLog.closed`): its attempt ended, no more lines will come.

Lifetime: a new log lives 2 x run_retention_s (`new_log_ttl_s`); when its run finishes, the engine gives
every attempt log of the run the run's own TTL (`attempt_log_keys`, RunStore), so logs go with their
run, without scanning the keyspace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..jsonutil import loads
from ..settings import TASK_LOG_MAX_BYTES, TASK_LOG_MAX_LINES
from .keys import Keys
from .lua import call_read_only, register

if TYPE_CHECKING:
    from ..workflows.runs import Run

__all__ = ["READ_MAX_BYTES", "AttemptLog", "LogCap", "append", "attempt_log_keys", "human_bytes", "new_log_ttl_s",
           "read"]

READ_CHUNK = 20  # attempt logs read per script call: bounds the time Redis spends on one call
READ_MAX_BYTES = 4 * 1024 * 1024  # lines one read returns at most (and so each script's reply)


@dataclass(frozen=True)
class LogCap:
    """How much of one attempt's log is kept: its newest `max_lines` lines within `max_bytes` bytes."""

    max_lines: int = TASK_LOG_MAX_LINES
    max_bytes: int = TASK_LOG_MAX_BYTES


def new_log_ttl_s(run_retention_s: float) -> int:
    """The TTL of a log its run has not finished yet: long enough for any run that finishes within the
    retention, bounded so that a log written after its run expired (a late attempt) goes too."""
    return int(2 * run_retention_s)


def append(client: Any, keys: Keys, run: str, node: str, attempt: int, lines: Sequence[str], *, cap: LogCap,
           ttl_s: int, dropped: int = 0, dropped_bytes: int = 0, closed: bool = False) -> None:
    """Append `lines` to an attempt's log (one script call); `dropped` lines (`dropped_bytes`) that the writer
    could not keep before sending are counted in its header too; `closed`: the attempt ended, these are its
    last lines. `client` may be a pipeline."""
    script = register(client, "append_log")
    script(keys=[keys.task_log(run, node, attempt)],
           args=[cap.max_lines, cap.max_bytes, ttl_s, dropped, dropped_bytes, int(closed), *lines], client=client)


@dataclass(frozen=True)
class AttemptLog:
    """What a read returned of one attempt's log.

    `lines` are the attempt's lines numbered `first`, `first + 1`, ...; pass `next` as `after` to read on.
    `dropped` lines before `first` went over the cap before this reader had them (`truncated` says so).
    """

    node: str
    attempt: int
    lines: list[str] = field(default_factory=list)
    first: int = 0
    dropped: int = 0
    dropped_bytes: int = 0  # of every line the log ever dropped
    exists: bool = False
    max_lines: int = 0
    max_bytes: int = 0
    closed: bool = False  # the worker closed the log: its attempt ended, no more lines will come
    size: int = 0  # bytes of `lines`

    @property
    def next(self) -> int:
        return self.first + len(self.lines)

    @property
    def truncated(self) -> str | None:
        """The marker line for the lines dropped before `first`, or None when none were."""
        if not self.dropped:
            return None
        caps = f"{self.max_lines:,} lines and {human_bytes(self.max_bytes)}" if self.max_lines else "its caps"
        return (f"[… {self.dropped:,} earlier line(s) dropped ({human_bytes(self.dropped_bytes)} in all): "
                f"a task attempt's log keeps its newest {caps}]")

    def text(self) -> list[str]:
        """The lines as shown: the marker first when lines were dropped."""
        marker = self.truncated
        return [marker, *self.lines] if marker else list(self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.node, "attempt": self.attempt, "first": self.first, "next": self.next,
                "dropped": self.dropped, "dropped_bytes": self.dropped_bytes, "truncated": self.truncated,
                "closed": self.closed, "lines": self.lines}


def human_bytes(size: int) -> str:
    """`size` for people: 900 bytes, 1.5 KiB, 3.0 MiB."""
    if size < 1024:
        return f"{size:,} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:,.1f} KiB"
    return f"{size / (1024 * 1024):,.1f} MiB"


def read(client: Any, keys: Keys, run: str, wanted: Iterable[tuple[str, int, int]], *,
         max_bytes: int = READ_MAX_BYTES) -> list[AttemptLog]:
    """The logs of `wanted` attempts of `run`, each (node, attempt, lines the reader has), in order, as many
    as fit in `max_bytes` of lines (the first one always: a log is within its cap): a prefix of `wanted`,
    the rest left for the next read. One script call per READ_CHUNK attempts."""
    wanted = list(wanted)
    out: list[AttemptLog] = []
    budget = max_bytes
    for start in range(0, len(wanted), READ_CHUNK):
        chunk = wanted[start:start + READ_CHUNK]
        replies = call_read_only(client, "read_log", [keys.task_log(run, node, attempt) for node, attempt, _ in chunk],
                                 [max(0, budget), int(not out), *(max(0, after) for _, _, after in chunk)])
        found = [_attempt_log(node, attempt, after, reply) for (node, attempt, after), reply in zip(chunk, replies, strict=False)]
        out += found
        budget -= sum(log.size for log in found)
        if len(found) < len(chunk) or budget <= 0:
            break
    return out


def _attempt_log(node: str, attempt: int, after: int, reply: list[bytes]) -> AttemptLog:
    if not reply:
        return AttemptLog(node, attempt, first=max(0, after))
    header = _header(reply[0])
    first = max(after, header["dropped"])
    lines = [line.decode("utf-8", "replace") for line in reply[1:]]
    return AttemptLog(node, attempt, lines, first=first, dropped=first - after, exists=True,
                      dropped_bytes=header["dropped_bytes"], max_lines=header["max_lines"],
                      max_bytes=header["max_bytes"], closed=header["closed"] == 1,
                      size=sum(len(line) for line in reply[1:]))


def _header(raw: bytes) -> dict[str, int]:
    """The header read back from Redis (untrusted): non-negative integers, zero where missing or wrong."""
    names = ("dropped", "dropped_bytes", "max_lines", "max_bytes", "closed")
    try:
        found = loads(raw)
    except ValueError:
        found = {}
    if not isinstance(found, dict):
        found = {}
    return {name: _count(found.get(name)) for name in names}


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 2**53 else 0


def attempt_log_keys(keys: Keys, run: Run) -> list[str]:
    """The log keys every attempt of `run` may have written (those that never logged do not exist)."""
    return [keys.task_log(run.id, task.node, attempt) for task in run.tasks.values()
            for attempt in range(1, task.attempt + 1)]
