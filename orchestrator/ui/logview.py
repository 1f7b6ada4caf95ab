"""The log lines of one attempt of one task, as the UI shows them."""

from __future__ import annotations

from typing import Any

from ..workflows.runs import Run, TaskRun

__all__ = ["task_logs"]


def task_logs(state: Any, run: Run, task: TaskRun, attempt: int) -> list[str]:
    """The lines the run record holds for `attempt` of `task` (the current one, or one in its history)."""
    if attempt == task.attempt:
        return [str(line) for line in task.logs or []]
    for entry in task.history:
        if entry.get("attempt") == attempt and isinstance(entry.get("logs"), list):
            return [str(line) for line in entry["logs"]]
    return []
