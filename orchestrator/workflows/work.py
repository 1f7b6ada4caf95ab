"""⑤ ⑧ What the engine hands on: task attempts to dispatch, and timers to fire later. Plain data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["RUN_TIMER", "Dispatch", "Timer", "attempt_member"]

RUN_TIMER = "*"  # the node name of a run's timeout timer


@dataclass(frozen=True)
class Dispatch:
    """One task attempt to hand to the executor."""

    run_id: str
    workflow: str
    node: str
    task: str
    attempt: int
    queue: str
    job_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    kind: str = "python"  # python (a registered task) | shell | http
    timeout_s: float | None = None  # None: the worker's default (ORCH_TASK_TIMEOUT_S)
    key: str = ""  # the idempotency key: the same for every attempt of this task in this run

    def payload(self) -> dict[str, Any]:
        """The JSON the entry point receives."""
        return {"run": self.run_id, "workflow": self.workflow, "node": self.node, "task": self.task,
                "attempt": self.attempt, "args": self.args, "kwargs": self.kwargs, "kind": self.kind,
                "timeout_s": self.timeout_s, "key": self.key}


@dataclass(frozen=True)
class Timer:
    """Something the engine does later: dispatch a retry, or time a run out (node RUN_TIMER)."""

    run_id: str
    node: str
    attempt: int
    due: datetime

    @property
    def member(self) -> str:
        return f"{self.run_id}\x1f{self.node}\x1f{self.attempt}"

    @classmethod
    def parse(cls, member: str, due: datetime) -> Timer:
        run_id, node, attempt = member.split("\x1f")
        return cls(run_id, node, int(attempt), due)


def attempt_member(run_id: str, node: str, attempt: int) -> str:
    """The key of one running attempt in the engine's in-flight hash."""
    return f"{run_id}\x1f{node}\x1f{attempt}"
