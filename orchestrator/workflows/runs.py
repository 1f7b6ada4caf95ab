"""④ Runs: the state of one workflow run and of each of its tasks, and how it is stored.

A run's id is derived from (rule, event source, event id): a redelivered event finds its run already
there. In Redis a run is one hash: `meta` (the run), `spec` (its workflow graph) and `t:<node>` (one
field per task), so a task's update touches one field and a whole run is one read.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..jsonutil import dumps, loads
from ..tracing import TraceContext, from_record
from .pools import Claim
from .spec import WorkflowSpec

__all__ = [
    "TERMINAL_STATES",
    "EventRef",
    "Run",
    "RunStatus",
    "TaskRun",
    "TaskState",
    "derive_run_id",
    "idempotency_key",
    "iso_utc",
    "item_name",
    "job_id",
]


class TaskState(enum.StrEnum):
    PENDING = "pending"      # waiting for upstream tasks
    QUEUED = "queued"        # dispatched: an RQ job waits for a worker
    RUNNING = "running"      # a worker started it (for a mapped task: its items run)
    RETRYING = "retrying"    # an attempt failed; the next one is dispatched at retry_at
    WAITING = "waiting"      # a wait step (waiting.py) waits for its event or approval; no worker is held
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"      # will not run: an upstream task failed or was skipped, or its condition is false
    CANCELLED = "cancelled"  # the run was cancelled or timed out before the task finished


TERMINAL_STATES = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED})


class RunStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for a slot: its workflow's concurrency limit is reached
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


def derive_run_id(rule: str, source: str, event_id: str) -> str:
    """The run id for (rule, event): the same inputs always give the same id."""
    return hashlib.blake2b(f"{rule}\x00{source}\x00{event_id}".encode(), digest_size=12).hexdigest()


def job_id(run_id: str, node: str, attempt: int) -> str:
    """The RQ job id of one attempt of one task of one run (item i of a mapped task `n[i]`: `n--i`)."""
    return f"{run_id}-{node.replace('[', '--').rstrip(']')}-{attempt}"


def idempotency_key(run_id: str, node: str) -> str:
    """The same for every attempt of one task in one run: what a task uses to make effects exactly-once."""
    return f"{run_id}:{node}"


def item_name(parent: str, index: int) -> str:
    """The task name of item `index` of mapped task `parent`."""
    return f"{parent}[{index}]"


@functools.lru_cache(maxsize=512)
def _spec_from_json(raw: bytes) -> WorkflowSpec:
    # Runs of one workflow version share a spec; parse it once (specs are immutable).
    return WorkflowSpec.from_dict(loads(raw))


def iso_utc(value: datetime | None) -> str | None:
    """A datetime as RFC 3339 text in UTC with a `Z` (None stays None)."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


@dataclass
class TaskRun:
    """One task of one run."""

    node: str
    task: str
    queue: str
    state: TaskState = TaskState.PENDING
    attempt: int = 0
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    retry_at: datetime | None = None
    logs: list[str] | None = None
    parent: str | None = None  # for item i of a mapped task: the mapped task; `index` is i
    index: int | None = None
    items: int | None = None  # for a mapped task: how many items it has
    history: list[dict[str, Any]] = field(default_factory=list)  # every earlier attempt, with its error
    via: dict[str, Any] | None = None  # what ended a wait step: the event, the approver, or its timeout

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def attempt_summary(self) -> dict[str, Any]:
        """This attempt as an entry of `history`."""
        return {"attempt": self.attempt, "state": str(self.state), "worker": self.worker,
                "queued_at": iso_utc(self.queued_at), "started_at": iso_utc(self.started_at),
                "finished_at": iso_utc(self.finished_at), "error": self.error, "error_type": self.error_type,
                **({"logs": self.logs} if self.logs else {})}

    def to_dict(self) -> dict[str, Any]:
        out = {"node": self.node, "task": self.task, "queue": self.queue, "state": str(self.state),
               "attempt": self.attempt, "queued_at": iso_utc(self.queued_at), "started_at": iso_utc(self.started_at),
               "finished_at": iso_utc(self.finished_at), "worker": self.worker, "result": self.result,
               "error": self.error}
        for name in ("error_type", "logs", "parent", "index", "items", "via"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.retry_at is not None:
            out["retry_at"] = iso_utc(self.retry_at)
        if self.history:
            out["history"] = self.history
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRun:
        return cls(node=data["node"], task=data["task"], queue=data["queue"], state=TaskState(data["state"]),
                   attempt=data.get("attempt", 0), queued_at=_dt(data.get("queued_at")),
                   started_at=_dt(data.get("started_at")), finished_at=_dt(data.get("finished_at")),
                   worker=data.get("worker"), result=data.get("result"), error=data.get("error"),
                   error_type=data.get("error_type"), retry_at=_dt(data.get("retry_at")), logs=data.get("logs"),
                   parent=data.get("parent"), index=data.get("index"), items=data.get("items"),
                   history=data.get("history", []),
                   via=data["via"] if isinstance(data.get("via"), dict) else None)


def task_json(task: TaskRun) -> bytes:
    """`dumps(task.to_dict())`. A fan-out's item not yet dispatched, which a large map writes by the
    thousand in the commit that expands it, comes from a template instead: the same bytes, faster."""
    later = (task.queued_at, task.started_at, task.finished_at, task.worker, task.result, task.error,
             task.error_type, task.retry_at, task.logs, task.via, task.items)  # set once dispatched or mapped
    plain = type(task.index) is int and all(type(v) is str for v in (task.task, task.queue, task.parent))
    if (not plain or task.state is not TaskState.PENDING or task.attempt or task.history  # read back from Redis
            or any(v is not None for v in later)):
        return dumps(task.to_dict())
    return _item_template(task.task, task.queue, task.parent) % (dumps(task.node), task.index)


@functools.lru_cache(maxsize=256)
def _item_template(task: str, queue: str, parent: str) -> bytes:
    """to_dict of a fresh item as JSON, with %b for its node name (JSON text) and %d for its index."""
    fresh = TaskRun(node="", task=task, queue=queue, parent=parent, index=0)
    head, tail = dumps(fresh.to_dict()).split(b'"node":"",', 1)
    return head.replace(b"%", b"%%") + b'"node":%b,' + tail.replace(b"%", b"%%").removesuffix(b'"index":0}') + b'"index":%d}'


@dataclass(frozen=True)
class EventRef:
    """The event that started a run."""

    id: str
    source: str
    type: str


@dataclass
class Run:
    """One run of a workflow."""

    id: str
    workflow: str
    rule: str
    event: EventRef
    params: dict[str, Any]
    spec: WorkflowSpec
    created_at: datetime
    status: RunStatus = RunStatus.RUNNING
    finished_at: datetime | None = None
    error: str | None = None
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    event_data: Any = None  # the data of the event that started the run (for YAML workflows' templates)
    guard: str | None = None  # the schedule overlap guard this run holds while it runs
    slot: Claim | None = None  # the slot pool it holds or waits for (pools.py)
    rerun_of: str | None = None  # the run this one re-runs
    steering: list[dict[str, Any]] = field(default_factory=list)  # who cancelled, retried, reran it, and when
    trace: TraceContext | None = None  # the W3C trace context its tasks are children of (tracing.py)
    depth: int = 0  # chain depth of the event that started it (events/chains.py)
    starts: int = 0  # how many times it started: 1, and one more for each retry (names its lifecycle events)
    flow: dict[str, Any] | None = None  # a run a hold released (flow/): control, hold, key, reason, events count
    events: list[dict[str, Any]] | None = None  # ... the held events (entry_id and the event), kept apart (`events`)
    ruleset: str | None = None  # the rule-set version that started it (rules/version.py); None: before versions
    version: int = 0  # the hash's `v`: incremented by every write (the engine's cache checks it)
    _items: dict[str, list[TaskRun]] = field(default_factory=dict, repr=False, compare=False)

    def items_of(self, parent: str) -> list[TaskRun]:
        """The item tasks of mapped task `parent`, in order (kept: a fan-out asks for them every batch)."""
        found = self._items.get(parent)
        count = self.tasks[parent].items or 0
        if found is None or len(found) != count:
            found = self._items[parent] = [self.tasks[item_name(parent, i)] for i in range(count)]
        return found

    @property
    def duration_s(self) -> float | None:
        return (self.finished_at - self.created_at).total_seconds() if self.finished_at else None

    @property
    def begun(self) -> int:
        """How many times the run started: `starts`, or for a run written before `starts` was kept (0), 1
        when any of its tasks was dispatched or failed (it did start), else 0."""
        if self.starts:
            return self.starts
        return int(any(t.attempt > 0 or t.state is TaskState.FAILED for t in self.tasks.values()))

    @property
    def never_started(self) -> bool:
        """Whether the run failed before it started (its parameters did not render, or its event's chain was
        too deep): no task ever ran, so it cannot be retried or rerun (that would start it with no
        parameters, or around the chain cut); the cause must be fixed and the event sent again."""
        return (self.status is RunStatus.FAILED and self.begun == 0
                and all(t.state is TaskState.SKIPPED for t in self.tasks.values()))

    def meta_dict(self) -> dict[str, Any]:
        event = {"id": self.event.id, "source": self.event.source, "type": self.event.type}
        return {"id": self.id, "workflow": self.workflow, "rule": self.rule, "event": event,
                "params": self.params, "status": str(self.status), "created_at": iso_utc(self.created_at),
                "finished_at": iso_utc(self.finished_at), "error": self.error, "version": self.spec.digest,
                "tasks_total": len(self.tasks),
                "tasks_done": sum(1 for t in self.tasks.values() if t.state in TERMINAL_STATES),
                **({"guard": self.guard} if self.guard else {}),
                **({"slot": self.slot.record()} if self.slot else {}),
                **({"rerun_of": self.rerun_of} if self.rerun_of else {}),
                **({"steering": self.steering} if self.steering else {}),
                **({"trace": self.trace.record()} if self.trace else {}),
                **({"depth": self.depth} if self.depth else {}),
                **({"starts": self.starts} if self.starts else {}),
                **({"flow": self.flow} if self.flow else {}),
                **({"ruleset": self.ruleset} if self.ruleset else {})}

    def to_fields(self, tasks: set[str] | None = None, *, meta: bool = True, spec: bool = False) -> dict[str, bytes]:
        """Hash fields to write: the meta, optionally the spec, and the given tasks (all if None)."""
        out: dict[str, bytes] = {}
        if meta:
            out["meta"] = dumps(self.meta_dict())
        if spec:
            out["spec"] = self.spec.json
            out["event"] = dumps(self.event_data)
            if self.events is not None:
                out["events"] = dumps(self.events)
        for name in self.tasks if tasks is None else tasks:
            out[f"t:{name}"] = task_json(self.tasks[name])
        return out

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Run:
        meta = loads(fields[b"meta"])
        spec = _spec_from_json(fields[b"spec"])
        tasks = {}
        for key, value in fields.items():
            if key.startswith(b"t:"):
                task = TaskRun.from_dict(loads(value))
                tasks[task.node] = task
        ordered = {}
        for node in spec.nodes:
            if node.name in tasks:
                ordered[node.name] = tasks[node.name]
                for index in range(tasks[node.name].items or 0):
                    child = tasks.get(item_name(node.name, index))
                    if child is not None:
                        ordered[child.node] = child
        return cls(id=meta["id"], workflow=meta["workflow"], rule=meta["rule"], event=EventRef(**meta["event"]),
                   params=meta["params"], spec=spec, created_at=_dt(meta["created_at"]) or datetime.now(UTC), status=RunStatus(meta["status"]),
                   finished_at=_dt(meta.get("finished_at")), error=meta.get("error"), tasks=ordered,
                   guard=meta.get("guard"), slot=Claim.from_record(meta.get("slot")), rerun_of=meta.get("rerun_of"), steering=_steering(meta.get("steering")),
                   trace=from_record(meta.get("trace")),
                   depth=_count(meta.get("depth")), starts=_count(meta.get("starts")),
                   ruleset=_ruleset(meta.get("ruleset")),
                   event_data=loads(fields[b"event"]) if b"event" in fields else None,
                   flow=meta.get("flow") if isinstance(meta.get("flow"), dict) else None,
                   events=_held(fields.get(b"events")),
                   version=int(fields.get(b"v", 0)))

    def to_dict(self) -> dict[str, Any]:
        """The run as shown by the API and `orch runs show --json`."""
        out = self.meta_dict()
        out["duration_s"] = self.duration_s
        if self.events is not None:  # the events a hold gave the run: who they are, not their data
            out["events"] = [{"entry_id": e.get("entry_id"), **{k: e.get("event", {}).get(k) for k in ("id", "source",
                              "type")}} for e in self.events]
        out["tasks"] = [{**t.to_dict(), "duration_s": t.duration_s,
                         "upstream": list(self.spec.node(t.parent or t.node).upstream)} for t in self.tasks.values()]
        return out


def _held(raw: bytes | None) -> list[dict[str, Any]] | None:
    """The held events of a run as read back from Redis: entries other than {entry_id, event} are dropped."""
    if raw is None:
        return None
    value = loads(raw)
    if not isinstance(value, list):
        return None
    return [e for e in value if isinstance(e, dict) and isinstance(e.get("event"), dict)]


def _count(value: Any) -> int:
    """A non-negative count read back from Redis (0 for anything else)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _ruleset(value: Any) -> str | None:
    """A rule-set version read back from Redis: hex digits, else None."""
    if isinstance(value, str) and 0 < len(value) <= 64 and all(c in "0123456789abcdef" for c in value):
        return value
    return None


def _steering(value: Any) -> list[dict[str, Any]]:
    """The steering log read back from Redis: entries other than objects of strings with a valid time are dropped."""
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())
            and _is_time(entry.get("at"))]


def _is_time(value: Any) -> bool:
    try:
        return isinstance(value, str) and _dt(value) is not None
    except ValueError:
        return False
