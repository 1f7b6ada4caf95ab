"""④ ⑧ A run's lifecycle, and what each step takes and frees. Pure: the engine reads, these decide.

    create   a run an event asks for: running, or `queued` when its pool (pools.py: its workflow's
             concurrency limit, its rule's keyed concurrency or singleton) is full; not created when its
             singleton skips, or its schedule's previous run still runs (skip, or held by queue-one)
    start    a queued run got a slot: its first tasks are dispatched
    cancel   every unfinished task is cancelled; running attempts get a cancel marker
    note     who asked for a cancel, retry or rerun, kept in the run's steering log
    timeout  the run's timer fired: like cancel, the run fails
    retry    a failed or cancelled run runs its failed, cancelled and skipped tasks again; it takes a slot
             of its workflow's limit like a new run, or waits `queued` for one
    rerun    a new run (new id, `rerun_of` the old) of the workflow's *current* version (what the workers
             run), with the same parameters and event; with `from_node`, tasks outside that task's
             downstream keep their results; it takes a slot like a new run
    ended    runs that finished free their slot (the first run in line gets it) and their overlap guard

What a step takes and frees is collected in `Effects`, which the engine commits with the runs in one
transaction. Slots and guards come in as `Resources`, read (and WATCHed) before the batch is applied.

Cancel markers name attempts, not runs (`{node: last cancelled attempt}`): a worker stops an attempt when
its number is at most the marker's, so the attempts a retry dispatches later are never stopped by the
cancellation that came before them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..errors import WorkflowError
from ..tracing import TraceContext, rerun_context
from .advance import Change, settle
from .effects import Effects, Guard, Resources
from .pools import Claim, workflow_claim
from .runs import TERMINAL_STATES, EventRef, Run, RunStatus, TaskRun, TaskState, job_id
from .spec import WorkflowSpec
from .work import RUN_TIMER, Timer, attempt_member

__all__ = ["STEERING_KEPT", "Effects", "Guard", "Resources", "RunRequest", "cancel", "cancels", "create", "ended",
           "failed_run", "new_run", "note", "rerun", "rerun_id", "retry", "skeleton", "start", "timeout"]

log = logging.getLogger(__name__)

STEERING_KEPT = 20  # entries of a run's steering log


@dataclass(frozen=True)
class RunRequest:
    """A run an event asks for; `error` is set when its parameters could not be rendered."""

    run_id: str
    rule: str
    spec: WorkflowSpec
    event: EventRef
    params: dict[str, Any] | None
    error: str | None = None
    guard: str | None = None  # `<schedule>/<rule>` when the schedule limits overlapping runs
    overlap: str = "allow"
    raw: bytes | None = None  # the event as stored, kept when overlap is queue-one
    event_data: Any = None  # the event's data, kept with the run
    trace: TraceContext | None = None  # the run's trace context (tracing.py), kept with the run
    depth: int = 0  # the event's chain depth (events/chains.py), kept with the run
    cut: bool = False  # the chain is too deep: `error` says so, and the run is recorded, never started
    flow: dict[str, Any] | None = None  # a run a hold released (flow/release.py): what Run.flow keeps
    events: list[dict[str, Any]] | None = None  # ... and the events it held (Run.events)
    claim: Claim | None = None  # the slot pool the rule's concurrency/singleton/priority asks for (pools.py)
    note: str | None = None  # why the claim's priority is 0 (its expression failed), for the decision record
    ruleset: str | None = None  # the rule-set version that planned it (rules/version.py), kept with the run

    @property
    def pool_claim(self) -> Claim | None:
        """The pool the run waits in: the rule's claim, else its workflow's concurrency limit."""
        return self.claim or workflow_claim(self.spec.name, self.spec.concurrency)


# -- creating ------------------------------------------------------------------------------------------------


def skeleton(run_id: str, spec: WorkflowSpec, rule: str, event: EventRef, params: dict[str, Any],
             now: datetime, event_data: Any = None, trace: TraceContext | None = None) -> Run:
    tasks = {n.name: TaskRun(node=n.name, task=n.task, queue=n.queue) for n in spec.nodes}
    return Run(id=run_id, workflow=spec.name, rule=rule, event=event, params=params, spec=spec,
               created_at=now, tasks=tasks, event_data=event_data, trace=trace)


def new_run(run_id: str, spec: WorkflowSpec, rule: str, event: EventRef, params: dict[str, Any],
            now: datetime, event_data: Any = None, *, queued: bool = False, trace: TraceContext | None = None,
            depth: int = 0) -> Change:
    """A new run with its first tasks dispatched (and its timeout set, if the workflow has one); with
    `queued`, a run that waits for a slot of its workflow's concurrency limit (`start` starts it)."""
    change = Change(skeleton(run_id, spec, rule, event, params, now, event_data, trace), created=True)
    change.run.depth = depth
    if queued:
        change.run.status = RunStatus.QUEUED
        return change
    _begin(change, now)
    return change


def failed_run(run_id: str, spec: WorkflowSpec, rule: str, event: EventRef, error: str, now: datetime,
               trace: TraceContext | None = None) -> Change:
    """A run that failed before any task could start (its parameters could not be rendered)."""
    run = skeleton(run_id, spec, rule, event, {}, now, trace=trace)
    for task in run.tasks.values():
        task.state, task.error = TaskState.SKIPPED, "the run failed before it started"
    run.status, run.error, run.finished_at = RunStatus.FAILED, error, now
    return Change(run, created=True, finished=True)


def create(request: RunRequest, now: datetime, resources: Resources, effects: Effects,
           arrival: tuple[int, int] | None = None) -> Change | None:
    """The run `request` asks for; None when its schedule's overlap policy skips or holds it, or its
    singleton (mode skip) has a run. `arrival`: the event's (epoch ms, sequence), its place in a pool's line."""
    if request.error is not None or request.params is None:
        failed = failed_run(request.run_id, request.spec, request.rule, request.event, request.error or "", now,
                            request.trace)
        failed.run.depth, failed.cut = request.depth, request.cut
        failed.run.flow, failed.run.events = request.flow, request.events
        failed.run.ruleset = request.ruleset
        return failed
    claim = request.pool_claim
    if claim is not None and claim.mode == "skip" and resources.full(claim):
        holder = ", ".join(resources.holders.get(claim.pool, [])) or "another run"
        effects.slotted[request.run_id] = ("singleton_skipped", f"singleton {claim.name}: run {holder} still runs "
                                           f"for key {claim.key!r} (mode: skip)", {**claim.shown, "holder": holder})
        effects.pool_events.append((claim.kind, claim.name, "skipped"))
        return None
    if request.guard is not None:
        if not _may_start(request, request.guard, resources, effects):
            return None
        resources.guards[request.guard] = Guard(request.run_id, resources.guards.get(request.guard, Guard()).queued)
        effects.take[request.guard] = request.run_id
    running = resources.take_slot(claim, request.run_id, arrival or (int(now.timestamp() * 1000), 0), effects)
    if claim is not None and claim.kind != "workflow":
        _slotted(request, claim, running, effects)
    change = new_run(request.run_id, request.spec, request.rule, request.event, request.params, now,
                     request.event_data, queued=not running, trace=request.trace, depth=request.depth)
    change.run.guard, change.run.slot = request.guard, claim
    change.run.flow, change.run.events = request.flow, request.events
    change.run.ruleset = request.ruleset
    return change


def _slotted(request: RunRequest, claim: Claim, running: bool, effects: Effects) -> None:
    """What the decision record says of a run in a rule's pool that did not simply start."""
    detail = {**claim.shown, **({"priority_error": request.note} if request.note else {})}
    if not running and request.run_id not in effects.slotted:
        rank = f", priority {claim.priority}" if claim.priority else ""
        effects.slotted[request.run_id] = ("waiting", f"rule {claim.name}: {claim.limit} run(s) already hold a slot "
                                           f"for key {claim.key!r}; the run starts when one frees{rank}", detail)


def _may_start(request: RunRequest, name: str, resources: Resources, effects: Effects) -> bool:
    guard = resources.guards.get(name, Guard())
    if guard.holder is None or guard.holder == request.run_id:
        return True
    schedule = name.split("/", 1)[0]
    if request.overlap == "queue-one" and not guard.queued and request.raw is not None:
        effects.queue[name] = request.raw
        resources.guards[name] = Guard(guard.holder, True)
        effects.overlaps.append((schedule, "queued"))
        effects.declined[request.run_id] = ("held", f"schedule {schedule}: run {guard.holder} still running; "
                                                    "the event is held until it ends (overlap: queue-one)")
        log.info("schedule %s: run %s still running; event %s held until it ends", schedule, guard.holder,
                 request.event.id)
    else:
        effects.overlaps.append((schedule, "skipped"))
        effects.declined[request.run_id] = ("skipped", f"schedule {schedule}: run {guard.holder} still running "
                                                       f"(overlap: {request.overlap})")
        log.info("schedule %s: run %s still running; event %s skipped (overlap: %s)", schedule, guard.holder,
                 request.event.id, request.overlap)
    return False


def start(change: Change, now: datetime) -> bool:
    """Start a run that waited for a slot; False when it is no longer waiting (e.g. cancelled)."""
    if change.run.status is not RunStatus.QUEUED:
        return False
    change.run.status = RunStatus.RUNNING
    _begin(change, now)
    return True


def _begin(change: Change, now: datetime) -> None:
    spec = change.run.spec
    change.began = True
    change.run.starts += 1
    if spec.timeout_s is not None:
        change.timers.append(Timer(change.run.id, RUN_TIMER, 0, now + timedelta(seconds=spec.timeout_s)))
    settle(change, now)


# -- stopping ------------------------------------------------------------------------------------------------


def stop(change: Change, now: datetime, status: RunStatus, reason: str) -> None:
    """End a running or queued run now with `status`: every unfinished task is cancelled with `reason`;
    attempts that may be running get a cancel marker, jobs not yet taken are withdrawn."""
    run = change.run
    for task in run.tasks.values():
        if task.state in TERMINAL_STATES:
            continue
        if task.state in (TaskState.QUEUED, TaskState.RUNNING):
            change.done.add(attempt_member(run.id, task.node, task.attempt))
            change.cancel_attempts[task.node] = task.attempt
        if task.state is TaskState.QUEUED:
            change.withdrawn.append((task.queue, job_id(run.id, task.node, task.attempt)))
        task.state, task.error, task.finished_at, task.retry_at = TaskState.CANCELLED, reason, now, None
        change.tasks.add(task.node)
    run.status, run.error, run.finished_at = status, reason, now
    change.finished = True


def cancels(marker: int | None, attempt: int) -> bool:
    """Whether a node's cancel marker (its last cancelled attempt) stops `attempt` of that node."""
    return marker is not None and attempt <= marker


def cancel(change: Change, now: datetime, by: str = "") -> bool:
    """Cancel a running or queued run; False (nothing changes) when it has already finished."""
    if change.run.status not in (RunStatus.RUNNING, RunStatus.QUEUED):
        return False
    stop(change, now, RunStatus.CANCELLED, f"cancelled{f' by {by}' if by else ''}")
    return True


def note(change: Change, action: str, by: str, now: datetime, **about: str) -> None:
    """Record in the run's steering log that `by` (a token's name, or the CLI's user) asked for `action`."""
    entry = {"action": action, "by": by or "unknown", "at": now.isoformat(), **about}
    change.run.steering = [*change.run.steering, entry][-STEERING_KEPT:]
    change.noted = True


def timeout(change: Change, now: datetime) -> bool:
    """The run's timer fired: fail it, cancelling what is unfinished; False when it is no longer running."""
    if change.run.status is not RunStatus.RUNNING:
        return False
    stop(change, now, RunStatus.FAILED, f"the run timed out after {change.run.spec.timeout_s:g}s")
    change.timed_out = True
    return True


# -- running again -------------------------------------------------------------------------------------------


def _reopen(task: TaskRun) -> None:
    if task.state is not TaskState.SKIPPED:
        task.history.append(task.attempt_summary())
    task.state, task.error, task.error_type, task.logs = TaskState.PENDING, None, None, None
    task.queued_at = task.started_at = task.finished_at = task.worker = None


def retry(change: Change, now: datetime, resources: Resources, effects: Effects) -> bool:
    """Run a failed or cancelled run's unsuccessful tasks again, in a slot of its workflow's limit (or
    queued until one frees); False when the run cannot be retried."""
    run = change.run
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED) or run.never_started:
        return False  # a run that never started has no parameters to run with (steer.py says so to the caller)
    run.starts = run.begun  # a run written before `starts` was kept counts its first start
    for task in run.tasks.values():
        if task.state in (TaskState.FAILED, TaskState.CANCELLED, TaskState.SKIPPED):
            if task.items is not None and task.parent is None:
                task.state, task.error, task.finished_at = TaskState.RUNNING, None, None  # its items are reopened
            else:
                _reopen(task)
            change.tasks.add(task.node)
    run.error, run.finished_at, run.guard = None, None, None  # a retry is the operator's, not a schedule's
    if not resources.take_slot(_again(run.slot, run.spec), run.id, (int(now.timestamp() * 1000), 0), effects):
        run.status = RunStatus.QUEUED
        return True
    run.status = RunStatus.RUNNING
    _begin(change, now)
    return True


def rerun_id(run_id: str, nonce: str) -> str:
    """The id of a rerun of `run_id`; the requester picks `nonce`, so asking twice is one rerun."""
    return hashlib.blake2b(f"{run_id}\x00rerun\x00{nonce}".encode(), digest_size=12).hexdigest()


def _downstream(spec: WorkflowSpec, start_node: str) -> set[str]:
    below = {start_node}
    for node in spec.nodes:  # topological order: upstream first
        if any(up in below for up in node.upstream):
            below.add(node.name)
    return below


def rerun(old: Run, new_id: str, now: datetime, resources: Resources, effects: Effects, *,
          spec: WorkflowSpec | None = None, from_node: str | None = None) -> Change:
    """A new run repeating `old` with `spec` (the workflow's current version; default: the old run's);
    with `from_node`, results of tasks outside its downstream are reused where the graph still has them."""
    if old.never_started:
        raise WorkflowError(f"run {old.id} never started (its parameters did not render or its chain was cut): "
                            "there is nothing to rerun")
    spec = spec or old.spec
    if from_node is not None and from_node not in {n.name for n in spec.nodes}:
        raise WorkflowError(f"run {old.id} has no task {from_node!r} (tasks: {', '.join(n.name for n in spec.nodes)})")
    run = skeleton(new_id, spec, old.rule, old.event, old.params, now, old.event_data, rerun_context(old.trace, new_id))
    run.rerun_of, run.depth, run.flow, run.events = old.id, old.depth, old.flow, old.events
    run.ruleset = old.ruleset  # the rules that rendered its params
    change = Change(run, created=True)
    if from_node is not None:
        _reuse(old, run, _downstream(spec, from_node))
    run.slot = _again(old.slot, spec)
    if not resources.take_slot(run.slot, new_id, (int(now.timestamp() * 1000), 0), effects):
        run.status = RunStatus.QUEUED
        return change
    _begin(change, now)
    return change


def _again(claim: Claim | None, spec: WorkflowSpec) -> Claim | None:
    """The pool a retry or rerun waits in: its run's (never skipping nor cancelling: an operator asked for
    it), else its workflow's limit."""
    if claim is None or claim.kind == "workflow":
        return workflow_claim(spec.name, spec.concurrency)
    return dataclasses.replace(claim, mode="wait")


def _reuse(old: Run, run: Run, redo: set[str]) -> None:
    """Copy into `run` the successful results of `old`'s tasks that `run` has and does not redo."""
    for name, task in old.tasks.items():
        parent = task.parent or name
        if parent in redo or parent not in run.tasks or old.tasks[parent].state is not TaskState.SUCCEEDED:
            continue
        run.tasks[name] = TaskRun(node=task.node, task=task.task, queue=task.queue, state=TaskState.SUCCEEDED,
                                  result=task.result, parent=task.parent, index=task.index, items=task.items,
                                  started_at=task.started_at, finished_at=task.finished_at, worker=task.worker,
                                  history=[{"reused_from": old.id, "attempt": task.attempt}])


# -- ending --------------------------------------------------------------------------------------------------


def ended(changes: list[Change], effects: Effects) -> None:
    """Runs of the batch that finished free their overlap guard and their concurrency slot."""
    for change in changes:
        if not change.finished:
            continue
        run = change.run
        if run.guard:
            effects.release.append((run.guard, run.id))
        claim = run.slot or workflow_claim(run.workflow, run.spec.concurrency)
        if claim is not None:
            effects.vacate.append((claim, run.id))
