"""④ Wait steps in Python workflows: `wait_for_event(...)` and `approval(...)` (workflows/waiting.py).

    @workflow
    def ship_order(order_id: str):
        reserved = reserve(order_id)
        paid = wait_for_event("payment", "payment.received", match={"data.currency": "EUR"},
                              correlate="data.order_id == params.order_id", timeout_s=3600,
                              on_timeout="fail", after=[reserved])
        ok = approval("go_ahead", timeout_s=86400, after=[paid])
        ship(order_id, paid, after=[ok])          # `paid` is the payment event's data

Each returns a TaskRef like a task call: passing it to a task passes the step's result (the event's data,
or the approval's data). A step waits once everything in `after` (and every task its correlation reads
as `results.<task>`) has finished, and holds no worker while it waits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .dsl import TaskRef, _builtin_builder
from .waiting import WAIT_KIND, correlation_refs, wait_options

__all__ = ["approval", "wait_for_event"]


def wait_for_event(name: str, event: str, *, match: Mapping[str, Any] | None = None, correlate: str | None = None,
                   timeout_s: float | None = None, on_timeout: Any = "fail", after: Sequence[TaskRef | str] = (),
                   when: str | None = None) -> TaskRef:
    """A step that waits for an event of type `event` matching the rule pattern `match` and the CEL
    `correlate` expression (over `event`, `data`, `params`, `results`, `trigger`); after `timeout_s` it
    fails (`on_timeout="fail"`) or succeeds with a default (`on_timeout={"default": value}`)."""
    options = wait_options(event, match=match, correlate=correlate, timeout_s=timeout_s, on_timeout=on_timeout)
    refs = sorted(correlation_refs(correlate))
    return _builtin_builder("wait_for_event").add_builtin(
        WAIT_KIND, name, {}, after=[*after, *refs], queue=None, options={"wait": options, "when": when})


def approval(name: str, *, timeout_s: float | None = None, on_timeout: Any = "fail",
             after: Sequence[TaskRef | str] = (), when: str | None = None) -> TaskRef:
    """A step that waits for a person: `orch runs approve RUN --task NAME [--data JSON]` (or the API's
    POST /runs/{id}/tasks/{task}/approve) resumes it with that data as its result."""
    options = wait_options(None, timeout_s=timeout_s, on_timeout=on_timeout, approval=True)
    return _builtin_builder("approval").add_builtin(
        WAIT_KIND, name, {}, after=after, queue=None, options={"wait": options, "when": when})
