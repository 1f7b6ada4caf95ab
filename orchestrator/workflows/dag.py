"""④ Readiness: which tasks of a run can start now, and which never will. Pure functions of the state."""

from __future__ import annotations

from collections.abc import Mapping

from .runs import TaskState
from .spec import WorkflowSpec

__all__ = ["blocked_nodes", "ready_nodes"]

_DEAD = frozenset({TaskState.FAILED, TaskState.SKIPPED})


def ready_nodes(spec: WorkflowSpec, states: Mapping[str, TaskState]) -> list[str]:
    """Pending nodes whose upstream nodes all succeeded, in the spec's topological order."""
    return [
        node.name
        for node in spec.nodes
        if states[node.name] is TaskState.PENDING
        and all(states[up] is TaskState.SUCCEEDED for up in node.upstream)
    ]


def blocked_nodes(spec: WorkflowSpec, states: Mapping[str, TaskState]) -> dict[str, str]:
    """Pending nodes that can never run, each with the upstream node that failed or was skipped."""
    out: dict[str, str] = {}
    for node in spec.nodes:
        if states[node.name] is not TaskState.PENDING:
            continue
        for up in node.upstream:
            if states[up] in _DEAD or up in out:
                out[node.name] = up
                break
    return out
