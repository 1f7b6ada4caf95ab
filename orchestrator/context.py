"""⑥ The task context: what a running task knows about its attempt, and how it logs and emits.

    from orchestrator import task
    from orchestrator.context import current

    @task
    def charge(order_id: str, amount: float) -> dict:
        ctx = current()                                   # the attempt running now
        ctx.logger.info("charging %s (attempt %d)", order_id, ctx.attempt)
        payment = bank.charge(order_id, amount, idempotency_key=ctx.key)   # same key on every retry
        ctx.emit("payment.captured", payment, id=f"{ctx.key}:captured")    # one event, however many tries
        return payment

`current()` works in the task's thread and in coroutines it awaits (a `ContextVar`); threads the task
starts see it only when started through `contextvars.copy_context().run`. Outside a task it raises
TaskError; a unit test can run a task under `with use(TaskContext(task="charge")): ...`.

`TaskTimeout` is raised inside a task that overruns its time limit, `TaskCancelled` inside one whose run
was cancelled while it ran (within a heartbeat period, `ORCH_WORKER_HEARTBEAT_S`). It derives from BaseException,
like KeyboardInterrupt, so an `except Exception:` in the task does not swallow it (`finally` still runs).

The worker (`executors/`) builds one context per attempt; the core only defines it, so tasks never
import the executor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .errors import TaskError
from .events.causation import caused_by
from .tracing import TraceContext

__all__ = ["TASK_LOGGER", "TaskContext", "TaskTimeout", "active", "current", "use"]

TASK_LOGGER = "orch.task"  # every task logger is a child of this one


class TaskTimeout(BaseException):
    """A task attempt ran past its time limit (its record's error_type is "TaskTimeout")."""


class TaskCancelled(BaseException):
    """The task's run was cancelled (or timed out) while the attempt ran; raised inside the task."""


@dataclass(frozen=True)
class TaskContext:
    """One attempt of one task: who it is, its idempotency key, its logger, and `emit`.

    `key` is the same for every attempt of this task in this run: pass it to the systems the task
    changes (an `Idempotency-Key`, a unique column) so a retry does not do the work twice. `logger`'s
    lines (INFO and above) go to the attempt's log while it runs (`orch runs logs`, GET /runs/{id}/logs).
    """

    run_id: str = ""
    workflow: str = ""
    task: str = ""
    node: str = ""
    attempt: int = 1
    key: str = ""
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger(TASK_LOGGER))
    deadline: float | None = None  # time.monotonic() at which the attempt is stopped; None: no limit
    worker: str = ""
    emitter: Callable[..., str] | None = field(default=None, repr=False, compare=False)
    trace: TraceContext | None = None  # the attempt's W3C trace context: its events carry it as `traceparent`

    @property
    def source(self) -> str:
        """The default `source` of the events this task emits."""
        return f"/orch/{self.workflow or 'task'}/{self.node or self.task or 'unknown'}"

    def remaining_s(self) -> float | None:
        """Seconds left before the attempt is stopped, or None without a time limit."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def emit(self, type: str, data: Any = None, **attributes: Any) -> str:
        """Publish an event caused by this attempt (`orchrun`, `orchtask`, `traceparent`) and return its id.

        Takes the attributes of `orchestrator.emit` (source, subject, id, time, datacontenttype,
        extensions); `source` defaults to `/orch/<workflow>/<node>`. The cause is attached even from a
        thread the task started. An `id` derived from `key` makes the event exactly-once across
        retries: the same (source, id) is not published twice within the dedup window.
        """
        attributes.setdefault("source", self.source)
        send = self.emitter if self.emitter is not None else _default_emitter()
        with caused_by(self.run_id, self.node, self.trace):
            return send(type, data, **attributes)


def _default_emitter() -> Callable[..., str]:
    from .events.client import emit  # the process-wide Client, from the ORCH_* environment

    return emit


_current: ContextVar[TaskContext | None] = ContextVar("orch_task_context", default=None)


def current() -> TaskContext:
    """The context of the task attempt running now; TaskError outside one."""
    context = _current.get()
    if context is None:
        raise TaskError("orchestrator.context.current() is only available while an orch worker runs a task "
                        "(in a unit test, wrap the call in `with orchestrator.context.use(TaskContext(...))`)")
    return context


def active() -> TaskContext | None:
    """The context of the task attempt running now, or None outside one (what log records are about)."""
    return _current.get()


@contextmanager
def use(context: TaskContext) -> Iterator[TaskContext]:
    """Within the block, `current()` returns `context` (the worker does this around each attempt)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
