"""⑦ Task records: what a worker reports about one attempt of one task, on the results stream.

A worker appends a `started` record before calling the task and a `succeeded` or `failed` record after
it; each is one XADD, so each report is atomic. The engine applies them to the run (⑧).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ..jsonutil import dumps, loads

__all__ = ["RecordKind", "TaskRecord"]


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

    def to_fields(self) -> dict[str, bytes]:
        body = {"kind": str(self.kind), "run": self.run, "node": self.node, "attempt": self.attempt,
                "at_s": self.at_s, "worker": self.worker}
        if self.kind is RecordKind.SUCCEEDED:
            body["result"] = self.result
        if self.error is not None:
            body["error"] = self.error
        if self.duration_s is not None:
            body["duration_s"] = self.duration_s
        return {"r": dumps(body)}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> TaskRecord:
        body = loads(fields[b"r"])
        return cls(kind=RecordKind(body["kind"]), run=body["run"], node=body["node"], attempt=int(body["attempt"]),
                   at_s=float(body["at_s"]), worker=body.get("worker", ""), result=body.get("result"),
                   error=body.get("error"), duration_s=body.get("duration_s"))
