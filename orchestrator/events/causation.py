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

Outside that context, the cause comes from the environment a shell task's command gets (executors/kinds/
shell.py): `ORCH_RUN_ID` and `ORCH_NODE`, with `TRACEPARENT` / `TRACESTATE`. So `orch emit` (or any
program using the clients) run by a shell task marks its events like a Python task does, and the engine
counts them one step deeper in the chain. The values are checked strictly (`env_cause`): a run id that is
not one the engine makes, or a node name that no workflow may have, means no cause from the environment;
a malformed trace context is dropped alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from ..tracing import TRACEPARENT, TraceContext, parse

__all__ = ["CAUSE_ATTRIBUTES", "RUN_ATTRIBUTE", "TASK_ATTRIBUTE", "Cause", "caused_by", "current_cause",
           "env_cause", "environment_cause", "with_cause"]

RUN_ATTRIBUTE = "orchrun"
TASK_ATTRIBUTE = "orchtask"
CAUSE_ATTRIBUTES = (RUN_ATTRIBUTE, TASK_ATTRIBUTE)
# What the engine makes (workflows/runs.py derive_run_id, lifecycle.py rerun_id: 12-byte blake2b digests)
# and what a workflow's node may be called (spec.py NODE_NAME), or an item `node[i]` of a mapped one.
_ENV_RUN_ID = re.compile(r"[0-9a-f]{24}")
_ENV_NODE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}(?:\[[0-9]{1,9}\])?")


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


def env_cause(environ: Mapping[str, str]) -> Cause | None:
    """The cause a shell task's command finds in its environment, or None when `environ` names no valid one.

    Both `ORCH_RUN_ID` and `ORCH_NODE` must be valid (`_ENV_RUN_ID`, `_ENV_NODE`); `TRACEPARENT` /
    `TRACESTATE` are parsed like any trace context (`tracing.parse`), and left out when malformed.
    """
    run_id, node = environ.get("ORCH_RUN_ID"), environ.get("ORCH_NODE")
    if run_id is None or node is None or not _ENV_RUN_ID.fullmatch(run_id) or not _ENV_NODE.fullmatch(node):
        return None
    return Cause(run_id, node, parse(environ.get("TRACEPARENT"), environ.get("TRACESTATE")))


def environment_cause(environ: Mapping[str, str] | None = None) -> Cause | None:
    """The cause in `environ` (default: `os.environ`; see `env_cause`): a batch reads it once, not once per
    event (the environment does not change while a batch is built; the current cause may, and is read per
    event)."""
    return env_cause(os.environ if environ is None else environ)


def with_cause(attributes: Mapping[str, object], environ: Mapping[str, str] | None = None, *,
               from_env: Cause | None | Literal[False] = False) -> dict[str, str]:
    """The causation attributes to add to an event whose other attributes are `attributes`.

    The cause is the current one (`caused_by`), else the one in `environ` (default: `os.environ`; see
    `env_cause`); empty without either. When the caller already set `orchrun` or `orchtask` (top level or in
    `attributes["extensions"]`), neither is added: an explicit value always wins, and the pair is never
    mixed; the same goes for a `traceparent` the caller set, with its `tracestate`.
    """
    cause = _current.get() or (environment_cause(environ) if from_env is False else from_env)
    if cause is None:
        return {}
    nested = attributes.get("extensions")
    given = set(attributes) | (set(nested) if isinstance(nested, Mapping) else set())
    out = {} if given.intersection(CAUSE_ATTRIBUTES) else {RUN_ATTRIBUTE: cause.run_id, TASK_ATTRIBUTE: cause.node}
    if cause.trace is not None and TRACEPARENT not in given:
        out.update(cause.trace.extensions())
    return out
