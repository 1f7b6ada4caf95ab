"""① Causation: which workflow run caused an event.

While a task runs, the worker's entry point sets the current cause (`caused_by(run_id, node)`); every
event that `emit()`, `Client` or `AsyncClient` publishes meanwhile carries two CloudEvents extension
attributes naming it:

    orchrun    the id of the run whose task emitted the event
    orchtask   the node (task name in the workflow) that emitted it

The rule engine can use them to break loops (a workflow whose tasks emit the events that start it),
and `orch events list --json`, `GET /events` and `orch events tail --json` show them like any other
attribute. A caller that sets either attribute itself keeps its own values: the cause is only a
default. The cause's trace context (the task attempt's, see orchestrator/tracing.py) rides along the
same way, as the `traceparent` / `tracestate` attributes, unless the caller set a `traceparent` of its
own. The cause lives in a `contextvars.ContextVar`, so it follows the task into coroutines it awaits,
but not into threads it starts (wrap those in `contextvars.copy_context().run`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from ..tracing import TRACEPARENT, TraceContext

__all__ = ["CAUSE_ATTRIBUTES", "RUN_ATTRIBUTE", "TASK_ATTRIBUTE", "Cause", "caused_by", "current_cause",
           "with_cause"]

RUN_ATTRIBUTE = "orchrun"
TASK_ATTRIBUTE = "orchtask"
CAUSE_ATTRIBUTES = (RUN_ATTRIBUTE, TASK_ATTRIBUTE)


@dataclass(frozen=True)
class Cause:
    """The task of a workflow run that is emitting events."""

    run_id: str
    node: str
    trace: TraceContext | None = None

    def extensions(self) -> dict[str, str]:
        """The CloudEvents extension attributes that name this cause (and its trace context)."""
        return {RUN_ATTRIBUTE: self.run_id, TASK_ATTRIBUTE: self.node, **(self.trace.extensions() if self.trace else {})}


_current: ContextVar[Cause | None] = ContextVar("orch_cause", default=None)


def current_cause() -> Cause | None:
    """The run and task on whose behalf code is running now, or None outside a task."""
    return _current.get()


@contextmanager
def caused_by(run_id: str, node: str, trace: TraceContext | None = None) -> Iterator[Cause]:
    """Within the block, events emitted in this context carry `orchrun=run_id` and `orchtask=node` (and
    `trace` as their `traceparent` / `tracestate`)."""
    cause = Cause(run_id, node, trace)
    token = _current.set(cause)
    try:
        yield cause
    finally:
        _current.reset(token)


def with_cause(attributes: Mapping[str, object]) -> dict[str, str]:
    """The causation attributes to add to an event whose other attributes are `attributes`.

    Empty outside a cause. When the caller already set `orchrun` or `orchtask` (top level or in
    `attributes["extensions"]`), neither is added: an explicit value always wins, and the pair is never
    mixed; the same goes for a `traceparent` the caller set, with its `tracestate`.
    """
    cause = _current.get()
    if cause is None:
        return {}
    nested = attributes.get("extensions")
    given = set(attributes) | (set(nested) if isinstance(nested, Mapping) else set())
    out = {} if given.intersection(CAUSE_ATTRIBUTES) else {RUN_ATTRIBUTE: cause.run_id, TASK_ATTRIBUTE: cause.node}
    if cause.trace is not None and TRACEPARENT not in given:
        out.update(cause.trace.extensions())
    return out
