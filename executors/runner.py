"""⑥ + ⑦ The entry point every orch job calls, and the records it reports.

`run_task(payload)` looks the task up by its registered name in the project the worker loaded,
reports `started`, calls it with the arguments the engine resolved (upstream results included),
checks the result is JSON, and reports `succeeded` or `failed` (then re-raises, so RQ records the
failure too). Each report is one XADD to the results stream.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

import redis

from orchestrator.errors import TaskError
from orchestrator.events.causation import caused_by
from orchestrator.jsonutil import JSONValueError, check_json
from orchestrator.state.keys import Keys
from orchestrator.workflows.dsl import Task
from orchestrator.workflows.records import RecordKind, TaskRecord

__all__ = ["WorkerContext", "install", "run_task"]

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 8000


@dataclass
class WorkerContext:
    """What the entry point needs in a worker process: the tasks and where to report."""

    client: redis.Redis
    keys: Keys
    tasks: dict[str, Task[Any, Any]]
    worker: str

    def report(self, record: TaskRecord) -> None:
        self.client.xadd(self.keys.results, record.to_fields())


_context: WorkerContext | None = None


def install(context: WorkerContext) -> None:
    """Make `context` the one `run_task` uses in this process (done once by the worker bootstrap)."""
    global _context
    _context = context


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc))}"
    return text[:MAX_ERROR_CHARS]


def run_task(payload: dict[str, Any]) -> Any:
    """Run one task attempt described by `payload` (run, node, task, attempt, args, kwargs).

    The task runs as the current cause (`caused_by(run, node)`): events it emits carry orchrun/orchtask.
    """
    context = _context
    if context is None:
        raise TaskError("run_task called outside an orch worker (no project loaded)")
    ids = {"run": payload["run"], "node": payload["node"], "attempt": int(payload["attempt"])}
    task = context.tasks.get(payload["task"])
    start = time.time()
    if task is None:
        error = TaskError(f"task {payload['task']!r} is not defined in the project this worker loaded "
                          f"({len(context.tasks)} tasks); deploy the same project to workers and engine")
        context.report(TaskRecord(RecordKind.FAILED, **ids, at_s=start, worker=context.worker, error=str(error),
                                  duration_s=0.0))
        raise error
    context.report(TaskRecord(RecordKind.STARTED, **ids, at_s=start, worker=context.worker))
    try:
        with caused_by(ids["run"], ids["node"]):  # events the task emits carry orchrun / orchtask
            result = task.fn(*payload.get("args", ()), **payload.get("kwargs", {}))
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))  # copies the context: coroutines see the cause too
        try:
            check_json(result, "result")
        except JSONValueError as exc:
            raise TaskError(f"task {task.name} returned a value that is not JSON: {exc}") from None
    except Exception as exc:
        end = time.time()
        context.report(TaskRecord(RecordKind.FAILED, **ids, at_s=end, worker=context.worker,
                                  error=_describe(exc), duration_s=end - start))
        raise
    end = time.time()
    context.report(TaskRecord(RecordKind.SUCCEEDED, **ids, at_s=end, worker=context.worker, result=result,
                              duration_s=end - start))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable
