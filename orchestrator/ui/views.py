"""What the UI's pages show, computed from runs and specs: pure functions, no I/O, unit-tested.

    graph(spec, run)   the DAG: one node per task of the spec (a mapped task collapsed into one node with
                       counts by state), edges from upstream, each node's state; also its levels, which
                       the page shows as a list where JavaScript is off
    catalog_graph(nodes)  the same for a workflow as the project catalogue describes it, without states
    gantt(run, now)    one bar per attempt of each task, placed on the run's time axis
    duration(s)        "850 ms", "12.3 s", "4 min 05 s", "2 h 03 min"
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..workflows.runs import Run, TaskRun, TaskState
from ..workflows.spec import WorkflowSpec

__all__ = ["GANTT_ROWS", "Bar", "ago", "catalog_graph", "duration", "gantt", "graph", "node_state"]

GANTT_ROWS = 200

_ORDER = [TaskState.FAILED, TaskState.RUNNING, TaskState.RETRYING, TaskState.QUEUED, TaskState.CANCELLED,
          TaskState.PENDING, TaskState.SKIPPED, TaskState.SUCCEEDED]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def ago(when: datetime | None, now: datetime) -> str:
    return "–" if when is None else f"{duration(max(0.0, (now - when).total_seconds()))} ago"


def node_state(own: TaskRun | None, items: list[TaskRun]) -> str:
    """The state a node is drawn in: a mapped task's items decide while they run."""
    if own is None:
        return str(TaskState.PENDING)
    if not items or own.state in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED):
        return str(own.state)
    states = {item.state for item in items}
    return str(next((s for s in _ORDER if s in states), own.state))


def graph(spec: WorkflowSpec, run: Run | None = None) -> dict[str, Any]:
    """Nodes, edges and levels of a workflow, with the states of `run`'s tasks when given."""
    nodes = []
    for node in spec.nodes:
        own = run.tasks.get(node.name) if run else None
        items = run.items_of(node.name) if run and own is not None and own.items else []
        counts = Counter(str(item.state) for item in items)
        nodes.append({"id": node.name, "task": node.task, "kind": node.kind, "queue": node.queue,
                      "mapped": node.map_over is not None, "item_count": len(items),
                      "counts": dict(sorted(counts.items(), key=lambda kv: _ORDER.index(TaskState(kv[0])))),
                      "state": node_state(own, items) if run else "",
                      "attempt": own.attempt if own else 0})
    edges = [{"from": up, "to": node.name} for node in spec.nodes for up in node.upstream]
    return {"nodes": nodes, "edges": edges, "levels": spec.levels()}


def catalog_graph(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The graph of a workflow as the catalogue describes it (no run): the same shape as `graph`."""
    names = {node["name"] for node in nodes}
    level: dict[str, int] = {node["name"]: 0 for node in nodes}
    for _ in range(len(nodes)):  # longest path from a root; at most len(nodes) passes in a DAG
        for node in nodes:
            level[node["name"]] = 1 + max((level[up] for up in node["upstream"] if up in names), default=-1)
    levels = [[n["name"] for n in nodes if level[n["name"]] == i] for i in range(max(level.values(), default=-1) + 1)]
    drawn = [{"id": n["name"], "task": n["task"], "kind": n["kind"], "queue": n["queue"], "mapped": n["mapped"],
              "item_count": 0, "counts": {}, "state": "", "attempt": 0} for n in nodes]
    edges = [{"from": up, "to": n["name"]} for n in nodes for up in n["upstream"] if up in names]
    return {"nodes": drawn, "edges": edges, "levels": levels}


@dataclass(frozen=True)
class Bar:
    """One attempt on the timeline: `x` and `width` are fractions of the run's span."""

    task: str
    attempt: int
    state: str
    x: float
    width: float
    started_at: datetime
    duration_s: float


def _attempts(task: TaskRun) -> list[tuple[int, str, datetime | None, datetime | None]]:
    out = []
    for entry in task.history:
        out.append((int(entry.get("attempt") or 0), str(entry.get("state") or ""),
                    _parse(entry.get("started_at")), _parse(entry.get("finished_at"))))
    out.append((task.attempt, str(task.state), task.started_at, task.finished_at))
    return out


def _parse(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def gantt(run: Run, now: datetime) -> tuple[list[Bar], int]:
    """The bars of every attempt that started (at most GANTT_ROWS), and how many were left out."""
    end = run.finished_at or now
    span = max((end - run.created_at).total_seconds(), 0.001)
    bars: list[Bar] = []
    for task in run.tasks.values():
        for attempt, state, started, finished in _attempts(task):
            if started is None:
                continue
            stop = finished or end
            x = max(0.0, (started - run.created_at).total_seconds()) / span
            width = max((stop - started).total_seconds(), 0.0) / span
            bars.append(Bar(task.node, attempt, state, min(x, 1.0), max(min(width, 1.0 - min(x, 1.0)), 0.002),
                            started, max((stop - started).total_seconds(), 0.0)))
    bars.sort(key=lambda bar: (bar.started_at, bar.task))
    return bars[:GANTT_ROWS], max(0, len(bars) - GANTT_ROWS)
