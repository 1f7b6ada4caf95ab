"""The log of one attempt of one task, as the UI shows it: its lines from Redis (written while the attempt
runs) and the marker for lines dropped by the cap; older records' logs kept in the run as a fallback."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..state import logs as storage
from ..workflows.runs import Run, TaskRun

__all__ = ["ShownLog", "task_logs"]


@dataclass(frozen=True)
class ShownLog:
    lines: list[str] = field(default_factory=list)
    truncated: str | None = None
    first: int = 0  # the number of the first line shown (lines dropped before it)


def task_logs(state: Any, run: Run, task: TaskRun, attempt: int) -> ShownLog:
    """What the attempt logged: from its log in Redis, else (records of older workers) from the run."""
    if attempt >= 1:
        (found,) = storage.read(state.redis, state.keys, run.id, [(task.node, attempt, 0)])
        if found.exists:
            return ShownLog(list(found.lines), found.truncated, found.first)
    if attempt == task.attempt:
        return ShownLog([str(line) for line in task.logs or []])
    for entry in task.history:
        if entry.get("attempt") == attempt and isinstance(entry.get("logs"), list):
            return ShownLog([str(line) for line in entry["logs"]])
    return ShownLog()
