"""The seams between the core and the packages around it, as Protocols.

The core never imports `triggers/` or `executors/`; the process entry points (`orchestrator.cli`) hand
it implementations of these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .events.envelope import Event
from .events.publish import Published
from .workflows.advance import Dispatch

__all__ = ["Dispatcher", "EventSink"]


class Dispatcher(Protocol):
    """⑤ Turns task dispatches into jobs (executors.dispatch.RQDispatcher)."""

    def dispatch(self, pipe: Any, dispatches: Sequence[Dispatch]) -> None:
        """Queue the jobs on `pipe`, a transaction after MULTI: they exist exactly when it commits."""
        ...

    def withdraw(self, pipe: Any, jobs: Sequence[tuple[str, str]]) -> None:
        """Queue on `pipe` the removal of (queue, job id) jobs that no worker has taken yet."""
        ...

    def missing_jobs(self, job_ids: list[str]) -> set[str]:
        """The jobs among `job_ids` that no longer exist."""
        ...

    def recover(self) -> list[str]:
        """Hand the jobs that dead workers had taken but not finished back to their queues; their ids."""
        ...


class EventSink(Protocol):
    """① Where triggers put the events they produce (orchestrator.events.publish.Publisher)."""

    def publish(self, events: Sequence[Event]) -> list[Published]:
        """Append events durably (deduplicated on source and id); return once they are accepted."""
        ...
