"""⑥ + ⑦ The entry point every orch job calls, and the records it reports.

`run_task(payload)` runs one task attempt. The payload (`Dispatch.payload()`) only names the attempt
(workflow, version, node, run, attempt) and carries the values of the node's slots; the steps:

1. find the work in the worker's own project (`executors/catalog.py`): the workflow by name and
   version, the node, its kind (`python`: a registered `@task`; `shell`; `http`), its literal arguments
   with the job's values in their slots, and its time limit (the node's `timeout_s`, else
   `ORCH_TASK_TIMEOUT_S`). A payload the project does not define is refused, reported failed and final,
   and nothing runs;
2. report `started`;
3. run it inside the attempt's scope (`executors/attempt.py`): the task context current
   (`orchestrator.context.current()`), the cause set (emitted events carry orchrun / orchtask and the
   trace context), logs and prints captured, and the time limit enforced; the captured lines go to the
   attempt's log in Redis while it runs (`executors/logship.py`), the last of them before its record;
   with traces exported, all of it (the reports too) inside the attempt's span, a child of its run's
   (`orchestrator/tracing.py`);
4. check the result is JSON;
5. report `succeeded` with the result, or `failed` with the error, its `error_type` and `retryable`
   (`executors/kinds/errors.py`), the error also ending the attempt's log; a failure is re-raised so RQ
   records it too.

Each report is one XADD to the results stream.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from orchestrator import tracing
from orchestrator.context import TaskCancelled, TaskContext, TaskTimeout
from orchestrator.errors import TaskError
from orchestrator.events.client import Client
from orchestrator.jsonutil import JSONValueError, check_json
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.logs import LogCap, new_log_ttl_s
from orchestrator.workflows.records import RecordKind, TaskRecord

from .attempt import Attempt, attempt_scope, log_line, task_logger
from .catalog import Catalog, JobPayload, Work
from .kinds.egress import EgressPolicy
from .kinds.errors import ResultNotJSON, TaskFailure, UnknownTaskError, classify
from .kinds.http import run_http
from .kinds.python import run_python
from .kinds.shell import run_shell
from .logship import LogShipper

__all__ = ["KINDS", "WorkerContext", "install", "run_task"]

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 8000
KINDS = ("python", "shell", "http")
_SELF_LIMITED = ("shell",)  # kinds that enforce their time limit themselves (they must kill a process group)


@dataclass
class WorkerContext:
    """What the entry point needs in a worker process: the project's workflows and tasks, and where to report.

    `settings` gives the http kind's allowlist and how task events are published; without it they come
    from the `ORCH_*` environment (with this context's key prefix).
    """

    client: redis.Redis
    keys: Keys
    catalog: Catalog
    worker: str
    settings: Settings | None = None
    _events: Client | None = field(default=None, init=False, repr=False)
    _egress: EgressPolicy | None = field(default=None, init=False, repr=False)
    _logs: LogShipper | None = field(default=None, init=False, repr=False)

    def report(self, record: TaskRecord) -> None:
        self.client.xadd(self.keys.results, record.to_fields())

    def resolved_settings(self) -> Settings:
        if self.settings is None:
            self.settings = Settings(key_prefix=self.keys.prefix)
        return self.settings

    def egress(self) -> EgressPolicy:
        """Where http tasks may connect: global addresses plus `ORCH_HTTP_ALLOW` (built once)."""
        if self._egress is None:
            self._egress = EgressPolicy.from_entries(self.resolved_settings().http_allow)
        return self._egress

    def logs(self) -> LogShipper:
        """Where attempts' log lines go: their logs in Redis, capped and expiring per the settings (built once)."""
        if self._logs is None:
            settings = self.resolved_settings()
            self._logs = LogShipper(self.client, self.keys, ttl_s=new_log_ttl_s(settings.run_retention_s),
                                    cap=LogCap(settings.task_log_max_lines, settings.task_log_max_bytes))
        return self._logs

    def events(self) -> Client:
        """The Client tasks emit through: this worker's Redis connection, published like any event."""
        if self._events is None:
            self._events = Client(settings=self.resolved_settings(), connection=self.client)
        return self._events


_context: WorkerContext | None = None


def install(context: WorkerContext | None) -> None:
    """Make `context` the one `run_task` uses in this process (done once by the worker bootstrap)."""
    global _context
    _context = context


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TaskError):  # orch's own, deliberate failures: the message says it all
        return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    text = f"{type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc))}"
    return text[:MAX_ERROR_CHARS]


def _attempt(work: Work, context: WorkerContext, trace: tracing.TraceContext | None) -> Attempt:
    job = work.job
    logs = context.logs().open(job.run, job.node, job.attempt)
    ctx = TaskContext(run_id=job.run, workflow=job.workflow, task=work.task, node=job.node, attempt=job.attempt,
                      key=work.key, logger=task_logger(job.workflow, job.node, logs),
                      deadline=time.monotonic() + work.timeout_s, worker=context.worker,
                      emitter=functools.partial(_emit, context), trace=trace)
    return Attempt(ctx=ctx, kind=work.kind, args=work.args, kwargs=work.kwargs, timeout_s=work.timeout_s, logs=logs,
                   egress=context.egress())


def _emit(context: WorkerContext, type: str, data: Any = None, **attributes: Any) -> str:
    return context.events().emit(type, data, **attributes)


def _runner(work: Work, context: WorkerContext) -> Callable[[Attempt], Any]:
    """What runs this attempt (the catalog checked that a python task is registered)."""
    if work.kind == "python":
        return functools.partial(run_python, context.catalog.tasks[work.task])
    if work.kind == "shell":
        return run_shell
    if work.kind == "http":
        return run_http
    raise UnknownTaskError(f"task {work.job.node!r} has kind {work.kind!r}, which this worker cannot run "
                           f"(kinds: {', '.join(KINDS)})")


def _record(kind: RecordKind, attempt: Attempt, context: WorkerContext, **fields: Any) -> TaskRecord:
    ctx = attempt.ctx
    return TaskRecord(kind, run=ctx.run_id, node=ctx.node, attempt=ctx.attempt, at_s=time.time(),
                      worker=context.worker, **fields)


def _refused(payload: Any, context: WorkerContext, exc: TaskFailure) -> None:
    log.error("job refused, nothing was run: %s", exc)
    named = JobPayload.identify(payload)
    if named is not None:  # the engine learns why (a forged job naming nothing has no run to tell)
        run, node, attempt = named
        context.report(TaskRecord(RecordKind.FAILED, run=run, node=node, attempt=attempt, at_s=time.time(),
                                  worker=context.worker, error=f"{type(exc).__name__}: {exc}", duration_s=0.0,
                                  error_type=exc.error_type, retryable=exc.retryable is True))


def run_task(payload: dict[str, Any]) -> Any:
    """Run one task attempt described by `payload`; see the module docstring."""
    context = _context
    if context is None:
        raise TaskError("run_task called outside an orch worker (no project loaded)")
    start = time.time()
    try:
        work = context.catalog.work(payload)
        runner = _runner(work, context)
    except TaskFailure as exc:  # the project does not define this job: nothing runs
        _refused(payload, context, exc)
        raise
    job = work.job
    if tracing.active:
        with tracing.task_attempt(job.trace, run_id=job.run, workflow=job.workflow, node=job.node,
                                  attempt=job.attempt, worker=context.worker) as trace:
            return _attempt_run(work, runner, context, start, trace)
    return _attempt_run(work, runner, context, start, job.trace)


def _attempt_run(work: Work, runner: Callable[[Attempt], Any], context: WorkerContext, start: float,
                 trace: tracing.TraceContext | None) -> Any:
    attempt = _attempt(work, context, trace)
    try:
        context.report(_record(RecordKind.STARTED, attempt, context))
        outcome = _outcome(attempt, runner, context, start)
    finally:  # exactly once, whatever is raised (even SystemExit): the shipper stops shipping this buffer
        context.logs().close(attempt.logs)  # and the last lines are in Redis before the record that ends the attempt
    context.report(outcome.record)
    if isinstance(outcome.error, TaskTimeout | TaskCancelled):  # BaseExceptions: RQ gets an ordinary error
        raise TaskFailure(str(outcome.error), error_type=outcome.record.error_type) from outcome.error
    if outcome.error is not None:
        raise outcome.error
    return outcome.record.result


@dataclass(frozen=True)
class _Outcome:
    """How an attempt ended: the record that says so, and the error it raised (None if it succeeded)."""

    record: TaskRecord
    error: BaseException | None = None


def _outcome(attempt: Attempt, runner: Callable[[Attempt], Any], context: WorkerContext, start: float) -> _Outcome:
    """Run the attempt; a failure's error also ends its log. Other BaseExceptions (SystemExit,
    KeyboardInterrupt) propagate: the worker itself is stopping."""
    try:
        result = _run(attempt, runner)
    except (Exception, TaskTimeout, TaskCancelled) as exc:
        error, (error_type, retryable) = _describe(exc), classify(exc)
        attempt.logs.add(log_line(logging.ERROR, "orch.worker", f"attempt {attempt.ctx.attempt} failed: {error}"))
        return _Outcome(_record(RecordKind.FAILED, attempt, context, error=error, duration_s=time.time() - start,
                                error_type=error_type, retryable=retryable), exc)
    return _Outcome(_record(RecordKind.SUCCEEDED, attempt, context, result=result, duration_s=time.time() - start))


def _run(attempt: Attempt, runner: Callable[[Attempt], Any]) -> Any:
    with attempt_scope(attempt, limit=attempt.kind not in _SELF_LIMITED):
        result = runner(attempt)
    try:
        check_json(result, "result")
    except JSONValueError as exc:
        raise ResultNotJSON(f"task {attempt.ctx.task} returned a value that is not JSON: {exc}") from None
    return result
