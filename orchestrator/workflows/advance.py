"""⑧ Advancing runs: the pure core. Given a run and what happened, decide what to write and dispatch.

No Redis here: the engine reads runs, calls these functions, and commits the resulting `Change`s in one
transaction. The clock is passed in.

What happens to a task, in order: it waits until its dependency policy says it may run (or never will:
then it is skipped); its `when` condition may skip it; a mapped task expands into one task per item
(`name[i]`), dispatched at most `max_parallel` at a time, and succeeds with the list of their results;
each attempt is dispatched with a stable idempotency key; a failed attempt is retried after a backoff
when its policy allows (a `Timer` the engine fires), else the task fails. A wait step (waiting.py) is
not dispatched: it becomes `waiting` until an event, an approval or its timeout ends it. The run ends
when every task has, failed if any task failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import RuleError, TaskError
from ..rules.templates import compile_condition
from . import waiting
from .census import census
from .policy import upstream_ready
from .records import RecordKind, TaskRecord
from .runs import (
    TERMINAL_STATES,
    Run,
    RunStatus,
    TaskRun,
    TaskState,
    item_name,
    job_id,
)
from .slots import collect
from .spec import NodeSpec, resolve
from .work import MORE_ITEMS, RUN_TIMER, Dispatch, Timer, attempt_member

__all__ = ["NOT_DEPLOYED", "NOT_DEPLOYED_MAX_RETRIES", "RUN_TIMER", "Change", "Dispatch", "Timer", "apply_record", "apply_timer", "settle"]

# A worker whose copy lacks a workflow version published moments ago (a reload its host has not got yet)
# reports this error type, retryable (executors/catalog.py WorkflowNotDeployed): the attempt is dispatched
# again after 1, 2, 4 ... NOT_DEPLOYED_MAX_DELAY_S seconds, whatever the node's retry policy, and is not
# counted against it; the worker stops saying so once its grace (ORCH_WORKER_DEPLOY_GRACE_S) is over, and
# the engine bounds them itself (NOT_DEPLOYED_MAX_RETRIES, about 5 minutes of retries): a record that says so
# for longer (a worker that never gets the files, or a task raising an error of that name) is an ordinary
# failure, under the node's retry policy.
NOT_DEPLOYED = "WorkflowNotDeployed"
NOT_DEPLOYED_MAX_DELAY_S = 10.0
NOT_DEPLOYED_MAX_RETRIES = 32
# Items of a mapped task dispatched per commit: the first start while the engine queues the rest, instead
# of after one commit that queues every item (10,000 took 1.2 s).
DISPATCH_CHUNK = 256


@dataclass
class Change:
    """What one batch did to one run: fields to write, work to dispatch, and facts for metrics.

    `was` is the run's status when the batch read it (None for a run the batch created): the store
    moves the run between its status indexes when it differs from the status at the end."""

    run: Run
    created: bool = False
    tasks: set[str] = field(default_factory=set)
    dispatches: list[Dispatch] = field(default_factory=list)
    started: list[TaskRun] = field(default_factory=list)
    finished_tasks: list[TaskRun] = field(default_factory=list)
    retried: list[TaskRun] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    running: dict[str, str] = field(default_factory=dict)  # attempt member -> worker, now in flight
    done: set[str] = field(default_factory=set)  # attempt members no longer in flight
    finished: bool = False
    cancel_attempts: dict[str, int] = field(default_factory=dict)  # node -> last attempt workers must stop
    withdrawn: list[tuple[str, str]] = field(default_factory=list)  # (queue, job id) to take off queues
    was: RunStatus | None = None
    noted: bool = False  # the run's steering log grew
    began: bool = False  # the run started (created running, got its slot, or was retried): it announces that
    timed_out: bool = False  # it finished because its timeout fired
    cut: bool = False  # a record of a run not started because its event's chain was too deep: announces nothing

    def __post_init__(self) -> None:
        if not self.created and self.was is None:
            self.was = self.run.status

    @property
    def dirty(self) -> bool:
        return self.created or bool(self.tasks) or self.finished or self.noted or self.was is not self.run.status


def node_of(run: Run, task: TaskRun) -> NodeSpec:
    return run.spec.node(task.parent or task.node)


# -- records and timers ----------------------------------------------------------------------------------


def apply_record(change: Change, record: TaskRecord, now: datetime, *, settle_now: bool = True) -> bool:
    """Apply one worker record to the run; False when it is stale or a duplicate (then nothing changes).

    With `settle_now=False` the caller settles the run once after applying all of a batch's records.
    """
    run = change.run
    task = run.tasks.get(record.node)
    if run.status is not RunStatus.RUNNING or task is None or task.attempt != record.attempt \
            or task.state in TERMINAL_STATES:
        return False
    at = datetime.fromtimestamp(record.at_s, UTC)
    member = attempt_member(run.id, task.node, task.attempt)
    if record.kind is RecordKind.STARTED:
        if task.state is not TaskState.QUEUED:
            return False
        task.state, task.started_at, task.worker = TaskState.RUNNING, at, record.worker
        change.started.append(task)
        change.running[member] = record.worker
        change.tasks.add(task.node)
        return True
    if task.state not in (TaskState.QUEUED, TaskState.RUNNING):
        return False
    change.done.add(member)
    task.worker = record.worker or task.worker
    task.finished_at = at
    task.logs = record.logs
    if task.started_at is None and record.duration_s is not None:
        task.started_at = datetime.fromtimestamp(record.at_s - record.duration_s, UTC)
    if record.kind is RecordKind.SUCCEEDED:
        task.state, task.result, task.error, task.error_type = TaskState.SUCCEEDED, record.result, None, None
        change.finished_tasks.append(task)
    else:
        task.error, task.error_type = record.error or "failed", record.error_type
        _failed_attempt(change, task, record.retryable, now)
    change.tasks.add(task.node)
    if settle_now:
        settle(change, now)
    return True


def _failed_attempt(change: Change, task: TaskRun, retryable: bool | None, now: datetime) -> None:
    run = change.run
    policy = node_of(run, task).retry
    task.state = TaskState.FAILED
    lagging = sum(1 for h in task.history if h.get("error_type") == NOT_DEPLOYED)  # attempts not counted
    if task.error_type == NOT_DEPLOYED and retryable is True and lagging < NOT_DEPLOYED_MAX_RETRIES:
        delay = min(NOT_DEPLOYED_MAX_DELAY_S, 2.0 ** lagging)
    elif policy is None or not policy.should_retry(task.attempt - lagging, task.error_type, retryable):
        change.finished_tasks.append(task)
        return
    else:
        delay = policy.delay_s(task.attempt - lagging, f"{run.id}:{task.node}")
    task.history.append(task.attempt_summary())
    task.state, task.retry_at = TaskState.RETRYING, now + timedelta(seconds=delay)
    change.timers.append(Timer(run.id, task.node, task.attempt, task.retry_at))
    change.retried.append(task)


def apply_timer(change: Change, timer: Timer, now: datetime, *, settle_now: bool = True) -> bool:
    """Fire a retry timer (dispatch the attempt it waits for), a wait step's timeout, or a mapped task's
    next items. False when it is stale. (A run's timeout timer, node RUN_TIMER, is lifecycle.timeout's.)"""
    run = change.run
    if run.status is not RunStatus.RUNNING or timer.node == RUN_TIMER:
        return False
    task = run.tasks.get(timer.node.removesuffix(MORE_ITEMS))
    if timer.node.endswith(MORE_ITEMS):  # a mapped task's next items: settle dispatches them
        if task is None or task.state is not TaskState.RUNNING or task.items is None:
            return False
    elif task is None or task.state not in (TaskState.RETRYING, TaskState.WAITING) or task.attempt != timer.attempt:
        return False
    elif task.state is TaskState.WAITING:  # a wait step's timeout (waiting.py)
        waiting.expire(change, task, now)
    else:
        _dispatch(change, task, now)
    if settle_now:
        settle(change, now)
    return True


# -- readiness ---------------------------------------------------------------------------------------------


def settle(change: Change, now: datetime) -> None:
    """Start what became ready, skip what never will run, and finish the run when nothing is left."""
    run = change.run
    if run.status is not RunStatus.RUNNING:
        return
    progressed = True
    while progressed:
        progressed = False
        for node in run.spec.nodes:
            task = run.tasks[node.name]
            if task.state is TaskState.PENDING:
                verdict = upstream_ready(node.depends, [str(run.tasks[up].state) for up in node.upstream])
                if verdict is None:
                    continue
                if verdict:
                    _start(change, node, task, now)
                else:
                    _skip(change, task, _skip_reason(run, node), now)
                progressed = progressed or task.state in TERMINAL_STATES
            elif task.state is TaskState.RUNNING and task.items is not None:
                progressed = _advance_map(change, node, task, now) or progressed
    if all(t.state in TERMINAL_STATES for t in run.tasks.values()):
        _finish(change, now)


def _skip_reason(run: Run, node: NodeSpec) -> str:
    if node.depends == "any_failed":
        return "no upstream task failed"
    up = next(u for u in node.upstream if run.tasks[u].state is not TaskState.SUCCEEDED)
    state = run.tasks[up].state
    return f"upstream task {up} {'failed' if state is TaskState.FAILED else f'was {state}'}"


def _skip(change: Change, task: TaskRun, reason: str, now: datetime) -> None:
    task.state, task.error, task.finished_at = TaskState.SKIPPED, reason, now
    change.tasks.add(task.node)


def _results(run: Run) -> dict[str, Any]:
    """Results by task (None for a task without one), and the run's event as `$event` for templates (and every
    event a hold gave it as `$events`; else the one event)."""
    out: dict[str, Any] = {}
    for node in run.spec.nodes:
        task = run.tasks[node.name]
        out[node.name] = task.result if task.state is TaskState.SUCCEEDED else None
    out["$event"] = {"id": run.event.id, "source": run.event.source, "type": run.event.type, "data": run.event_data}
    out["$events"] = [e["event"] for e in run.events] if run.events is not None else [out["$event"]]
    return out


def _start(change: Change, node: NodeSpec, task: TaskRun, now: datetime) -> None:
    run = change.run
    results = _results(run)
    try:
        condition = {"params": run.params, "event": results["$event"], "events": results["$events"],
                     "results": {k: v for k, v in results.items() if not k.startswith("$")}}
        if node.when is not None and not compile_condition(node.when)(condition):
            _skip(change, task, f"condition is false: {node.when}", now)
            return
        if node.map_over is not None:
            _expand(change, node, task, resolve(node.map_over, run.params, results), now)
            return
    except (RuleError, TaskError) as exc:
        _fail_now(change, task, f"cannot start the task: {exc}", now)
        return
    if node.kind == waiting.WAIT_KIND:
        waiting.begin(change, node, task, now)
    else:
        _dispatch(change, task, now)


def _fail_now(change: Change, task: TaskRun, error: str, now: datetime) -> None:
    task.state, task.error, task.finished_at = TaskState.FAILED, error, now
    change.tasks.add(task.node)
    change.finished_tasks.append(task)


# -- fan-out -----------------------------------------------------------------------------------------------


def _expand(change: Change, node: NodeSpec, task: TaskRun, items: Any, now: datetime) -> None:
    if not isinstance(items, list):
        _fail_now(change, task, f"map over a {type(items).__name__}, not a list", now)
        return
    run = change.run
    task.items, task.state, task.started_at = len(items), TaskState.RUNNING, now
    change.tasks.add(task.node)
    for index in range(len(items)):
        child = TaskRun(node=item_name(node.name, index), task=node.task, queue=node.queue, parent=node.name,
                        index=index)
        run.tasks[child.node] = child
        change.tasks.add(child.node)
    _advance_map(change, node, task, now)


def _advance_map(change: Change, node: NodeSpec, task: TaskRun, now: datetime) -> bool:
    """Dispatch more items (up to max_parallel); finish the mapped task when every item has. True if done."""
    run = change.run
    children = run.items_of(node.name)
    failed, pending, active, terminal = census(children)  # one pass over the items (census.py)
    touched: list[TaskRun] = []
    if failed is not None:
        for child in (touched := pending):  # fail fast: no new items once one failed
            _skip(change, child, f"item {failed.index} failed", now)
    elif pending:
        room = len(pending) if node.max_parallel is None else max(0, node.max_parallel - active)
        results = _results(run)  # once for all the items dispatched now, not once per item
        try:
            items = resolve(node.map_over, run.params, results)
        except TaskError as exc:
            items, results = [], {}
            for child in (touched := pending[:room]):
                _fail_now(change, child, f"cannot build the task's arguments: {exc}", now)
        for child in (touched := pending[:min(room, DISPATCH_CHUNK)]) if items else []:
            _dispatch(change, child, now, {**results, "$item": items[child.index or 0]})
        if items and min(room, len(pending)) > DISPATCH_CHUNK:  # the rest from the next commit on
            change.timers.append(Timer(run.id, node.name + MORE_ITEMS, len(children) - len(pending), now))
    if terminal + sum(1 for c in touched if c.state in TERMINAL_STATES) < len(children):
        return False
    task.finished_at = now
    if failed is not None:
        first = (failed.error or "failed").strip().splitlines() or ["failed"]
        task.state, task.error = TaskState.FAILED, f"item {failed.index} failed: {first[0]}"
    elif any(c.state is not TaskState.SUCCEEDED for c in children):
        task.state, task.error = TaskState.CANCELLED, "some items did not run"
    else:
        task.state, task.result = TaskState.SUCCEEDED, [c.result for c in children]
    change.tasks.add(task.node)
    change.finished_tasks.append(task)
    return True


# -- dispatch and finish -----------------------------------------------------------------------------------


def _dispatch(change: Change, task: TaskRun, now: datetime, results: dict[str, Any] | None = None) -> None:
    """Queue the task's next attempt; `results` (with `$item` for an item) saves recomputing them."""
    run = change.run
    node = node_of(run, task)
    change.tasks.add(task.node)
    try:
        if results is None:
            results = _results(run)
            if task.parent is not None:
                items = resolve(node.map_over, run.params, results)
                results = {**results, "$item": items[task.index or 0]}
        values = collect(node, run.params, results)
    except (TaskError, IndexError, TypeError) as exc:
        _fail_now(change, task, f"cannot build the task's arguments: {exc}", now)
        return
    task.attempt += 1
    task.state, task.queued_at, task.retry_at = TaskState.QUEUED, now, None
    task.started_at = task.finished_at = task.worker = task.error = task.error_type = task.logs = None
    change.dispatches.append(Dispatch(run_id=run.id, workflow=run.workflow, version=run.spec.digest, node=task.node,
                                      task=task.task, attempt=task.attempt, queue=task.queue,
                                      job_id=job_id(run.id, task.node, task.attempt), args=values,
                                      timeout_s=node.timeout_s, trace=run.trace))


def _finish(change: Change, now: datetime) -> None:
    run = change.run
    failed = [t for t in run.tasks.values() if t.state is TaskState.FAILED and t.parent is None]
    run.status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
    if failed:
        first = failed[0]
        summary = ((first.error or "").strip().splitlines() or ["no error recorded"])[0]
        run.error = f"task {first.node} failed: {summary}"
    run.finished_at = now
    change.finished = True
