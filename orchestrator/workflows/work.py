"""⑤ ⑧ What the engine hands on: task attempts to dispatch, and timers to fire later. Plain data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..tracing import TRACEPARENT, TRACESTATE, TraceContext

__all__ = ["MORE_ITEMS", "OPTIONAL_PAYLOAD_FIELDS", "PAYLOAD_FIELDS", "RUN_TIMER", "Dispatch", "Timer",
           "attempt_member"]

RUN_TIMER = "*"  # the node name of a run's timeout timer
MORE_ITEMS = "@more"  # suffix of the node name of a mapped task's "dispatch the next items" timer


PAYLOAD_FIELDS = ("workflow", "version", "node", "run", "attempt", "args")
OPTIONAL_PAYLOAD_FIELDS = (TRACEPARENT, TRACESTATE)  # the run's trace context, when it has one


@dataclass(frozen=True)
class Dispatch:
    """One task attempt to hand to the executor."""

    run_id: str
    workflow: str
    version: str  # the digest of the run's workflow spec: the worker runs only versions it loaded
    node: str
    task: str
    attempt: int
    queue: str
    job_id: str
    args: list[Any]  # the values of the node's slots (slots.py), nothing else of the task
    timeout_s: float | None = None  # for the executor's own backstop; the worker takes it from its spec
    trace: TraceContext | None = None  # the run's trace context: the attempt's span is its child

    def payload(self) -> dict[str, Any]:
        """The JSON the entry point receives: identifiers and values, never what to run (PAYLOAD_FIELDS)."""
        return {"workflow": self.workflow, "version": self.version, "node": self.node, "run": self.run_id,
                "attempt": self.attempt, "args": self.args, **(self.trace.extensions() if self.trace else {})}


@dataclass(frozen=True)
class Timer:
    """Something the engine does later: dispatch a retry, time a run out (node RUN_TIMER), or dispatch a
    mapped task's next items (node `<name>@more`, its `attempt` the items dispatched so far)."""

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
