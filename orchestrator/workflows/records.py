"""⑦ Task records: what a worker reports about one attempt of one task, on the results stream.

A worker appends a `started` record before calling the task and a `succeeded` or `failed` record after
it; each is one XADD, so each report is atomic. The engine applies them to the run (⑧). Steering
commands (`orch runs cancel|retry|rerun`, and their HTTP routes) travel on the same stream as
`ControlRecord`s (field `c`), so the engine stays the only writer of runs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ..jsonutil import dumps, loads

__all__ = ["ControlRecord", "RecordKind", "TaskRecord"]


class RecordKind(enum.StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class TaskRecord:
    """One report about one attempt. Times are epoch seconds (UTC) from the worker's clock."""

    kind: RecordKind
    run: str
    node: str
    attempt: int
    at_s: float
    worker: str = ""
    result: Any = None
    error: str | None = None
    duration_s: float | None = None
    error_type: str | None = None  # the exception's class name, matched by a retry policy's `on`
    retryable: bool | None = None  # False: never retry (e.g. HTTP 4xx, unknown task); None: per policy
    logs: list[str] | None = None  # sent by workers older than per-attempt logs (state/logs.py); kept on the task

    def to_fields(self) -> dict[str, bytes]:
        body = {"kind": str(self.kind), "run": self.run, "node": self.node, "attempt": self.attempt,
                "at_s": self.at_s, "worker": self.worker}
        if self.kind is RecordKind.SUCCEEDED:
            body["result"] = self.result
        if self.error is not None:
            body["error"] = self.error
        if self.duration_s is not None:
            body["duration_s"] = self.duration_s
        for name in ("error_type", "retryable", "logs"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return {"r": dumps(body)}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> TaskRecord:
        body = loads(fields[b"r"])
        return cls(kind=RecordKind(body["kind"]), run=body["run"], node=body["node"], attempt=int(body["attempt"]),
                   at_s=float(body["at_s"]), worker=body.get("worker", ""), result=body.get("result"),
                   error=body.get("error"), duration_s=body.get("duration_s"), error_type=body.get("error_type"),
                   retryable=body.get("retryable"), logs=body.get("logs"))


@dataclass(frozen=True)
class ControlRecord:
    """A request to steer a run: cancel it, retry its failed tasks, rerun it as `new_run`, or approve its
    approval step `node`."""

    action: str  # "cancel" | "retry" | "rerun" | "approve" | "start" (the engine's own: a queued run got its slot)
    run: str
    at_s: float
    by: str = ""
    new_run: str | None = None
    from_node: str | None = None
    node: str | None = None  # of an approval: the approval step (waiting.py) ...
    data: Any = None  # ... and the data the approver gave, its result
    request: str | None = None  # the request's own id (an approval's: kept in the step's via, so its sender
    #                             can tell whether it, or another approval before it, resolved the step)

    def to_fields(self) -> dict[str, bytes]:
        body = {"action": self.action, "run": self.run, "at_s": self.at_s, "by": self.by}
        for name in ("new_run", "from_node", "node", "data", "request"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return {"c": dumps(body)}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> ControlRecord:
        body = loads(fields[b"c"])
        if body["action"] not in ("cancel", "retry", "rerun", "approve", "start"):
            raise ValueError(f"unknown control action {body['action']!r}")
        if not isinstance(body.get("node"), str | None):
            raise ValueError("a control record's node is a task name")
        if not isinstance(body.get("request"), str | None):
            raise ValueError("a control record's request is an id")
        return cls(action=body["action"], run=body["run"], at_s=float(body["at_s"]), by=body.get("by", ""),
                   new_run=body.get("new_run"), from_node=body.get("from_node"), node=body.get("node"),
                   data=body.get("data"), request=body.get("request"))
