"""④ ⑧ Wait steps: a step that waits for a matching event, or for a person's approval, holding no worker.

A wait step is a node of kind `wait` whose `wait` option says what it waits for:

    {"event": "payment.received",                      the event type (exact: waiters are indexed by it)
     "match": {"data.currency": "EUR"},                a rule's `match:` pattern over the event
     "correlate": "data.order_id == params.order_id",  CEL over event, data, params, results, trigger
     "timeout_s": 3600, "on_timeout": "fail"}          or {"default": <the step's result>}
    {"approval": true, "timeout_s": 86400}             resolved by `orch runs approve RUN --task T`

Why a task kind and not a call inside a task (`ctx.wait_for_event(...)`): a task that waits holds its
worker for as long as it waits, and a task's code runs again from the top when it is retried, so a
wait inside it would need replay. A wait step is state in the run instead: when it becomes ready the
engine records it `waiting` and registers a waiter (engine/waits.py); no job is dispatched.

How it ends:
    matched    an event of its type matches the pattern and the correlation: it succeeds with the
               event's `data` as its result (the event's id, source and type are kept in `via`)
    approved   its result is the approval's `--data` (an empty object without it); `via` names who
    timed out  it fails (`on_timeout: fail`, the default) or succeeds with the default result
The run's own timeout and cancellation cancel it like any unfinished task.

Pure: the engine reads, these decide. What a waiting step is matched with (its `Waiter`, the pattern
compiled by the rules' own matcher, the correlation) is waiter.py's.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..errors import RuleError, WorkflowError
from ..events.envelope import Event
from ..jsonutil import JSONValueError, check_json
from ..rules.expr import compile_expression
from ..rules.match import event_view
from .runs import Run, RunStatus, TaskRun, TaskState, iso_utc
from .waiter import Waiter, correlation_key, index_value, path_value, wait_rule
from .work import Timer

if TYPE_CHECKING:
    from .advance import Change
    from .spec import NodeSpec

__all__ = ["LOOKBACK", "WAIT_KEYS", "WAIT_KIND", "WaitHit", "Waiter", "approve", "begin", "check_wait",
           "check_wait_node", "correlation_key", "correlation_refs", "expire", "index_value", "note_error",
           "path_value", "resolve", "wait_config", "wait_options", "waiter_of"]

log = logging.getLogger(__name__)

WAIT_KIND = "wait"
LOOKBACK = "@lookback"  # suffix of the node name of a wait's look-back timer (never a valid task name)
WAIT_KEYS = ("event", "match", "correlate", "timeout_s", "on_timeout", "approval")
_GLOB = frozenset("*?[")


# -- the step's configuration ---------------------------------------------------------------------------------


def check_wait_node(where: str, node: NodeSpec) -> None:
    """A wait node: kind `wait` with its options, and none of a task's that would not apply."""
    if node.kind != WAIT_KIND:
        raise WorkflowError(f"{where}: wait options belong to a wait step (kind wait), not a {node.kind} task")
    for name in ("retry", "map_over", "timeout_s"):
        if getattr(node, name) is not None:
            hint = " (a wait step's own timeout_s is a wait option)" if name == "timeout_s" else ""
            raise WorkflowError(f"{where}: a wait step takes no {name.replace('_over', '')}{hint}")
    if node.args or node.kwargs:
        raise WorkflowError(f"{where}: a wait step takes no arguments")
    check_wait(where, node.wait)


def check_wait(where: str, config: Any) -> None:
    """Validate a wait step's configuration; WorkflowError says what is wrong."""
    if not isinstance(config, Mapping):
        raise WorkflowError(f"{where}: a wait step needs its wait options (event, match, correlate, timeout_s, ...)")
    unknown = sorted(set(config) - set(WAIT_KEYS))
    if unknown:
        raise WorkflowError(f"{where}: unknown wait option {', '.join(map(repr, unknown))} "
                            f"(options: {', '.join(WAIT_KEYS)})")
    if config.get("approval"):
        extra = sorted(k for k in ("event", "match", "correlate") if config.get(k) is not None)
        if extra:
            raise WorkflowError(f"{where}: an approval step waits for a person, not an event: drop {', '.join(extra)}")
    else:
        _check_event(where, config)
    timeout_s = config.get("timeout_s")
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float)
                                  or timeout_s <= 0):
        raise WorkflowError(f"{where}: timeout_s must be a positive number of seconds")
    _check_on_timeout(where, config.get("on_timeout", "fail"), timeout_s)


def _check_event(where: str, config: Mapping[str, Any]) -> None:
    event = config.get("event")
    if not isinstance(event, str) or not event or _GLOB & set(event):
        raise WorkflowError(f"{where}: a wait step needs the exact event type it waits for (event:, no glob)")
    try:
        wait_rule(event, json.dumps(config.get("match") or {}, sort_keys=True))
    except (ValidationError, RuleError, TypeError, ValueError) as exc:  # RuleError: a PatternError
        raise WorkflowError(f"{where}: match: {_pattern_message(exc)}") from None
    correlate = config.get("correlate")
    if correlate is not None:
        try:
            compile_expression(correlate)
        except RuleError as exc:
            raise WorkflowError(f"{where}: correlate: {exc}") from None


def _check_on_timeout(where: str, policy: Any, timeout_s: Any) -> None:
    if policy == "fail":
        return
    if not isinstance(policy, Mapping) or set(policy) != {"default"}:
        raise WorkflowError(f'{where}: on_timeout is "fail" or {{"default": <result>}}')
    if timeout_s is None:
        raise WorkflowError(f"{where}: on_timeout needs a timeout_s")
    try:
        check_json(policy["default"])
    except JSONValueError as exc:
        raise WorkflowError(f"{where}: on_timeout default: {exc}") from None


def _pattern_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())
    return str(exc)


_RESULT_REF = re.compile(r"""\bresults\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*["']([A-Za-z_][A-Za-z0-9_-]*)["']\s*\])""")


def correlation_refs(text: str | None) -> set[str]:
    """The tasks whose results a correlation reads (`results.<task>`, `results["<task>"]`): dependencies."""
    return {a or b for a, b in _RESULT_REF.findall(text or "")}


def wait_options(event: str | None, *, match: Mapping[str, Any] | None = None, correlate: str | None = None,
                 timeout_s: float | None = None, on_timeout: Any = "fail", approval: bool = False) -> dict[str, Any]:
    """A wait step's options as stored in its node, leaving out what is not set."""
    out: dict[str, Any] = {"approval": True} if approval else {"event": event}
    out.update({k: v for k, v in (("match", dict(match) if match else None), ("correlate", correlate),
                                  ("timeout_s", timeout_s)) if v is not None})
    if on_timeout != "fail":
        out["on_timeout"] = on_timeout
    return out


# -- a waiting step's waiter and hits (the Waiter itself: waiter.py) -------------------------------------------


@dataclass(frozen=True)
class WaitHit:
    """A waiting step resumed by an event (`via` names it, `event` is it), with the step's result."""

    run: str
    node: str
    attempt: int
    result: Any
    via: dict[str, Any]
    event: Event | None = None  # checked again against the run's own wait (resolve)


def wait_config(run: Run, node: str) -> Mapping[str, Any]:
    spec = run.spec.node(node)
    return spec.wait or {}


def waiter_of(run: Run, task: TaskRun) -> Waiter | None:
    """The waiter of `task` (waiting for an event) in `run`; None for an approval step."""
    config = wait_config(run, task.node)
    if config.get("approval") or not config.get("event"):
        return None
    refs = correlation_refs(config.get("correlate"))  # only what the correlation reads: a waiter stays small
    results = {n: (t.result if t.state is TaskState.SUCCEEDED else None) for n, t in run.tasks.items()
               if t.parent is None and n in refs}
    trigger = {"id": run.event.id, "source": run.event.source, "type": run.event.type, "data": run.event_data}
    since = task.started_at or run.created_at
    return Waiter(run.id, task.node, task.attempt, config["event"], config.get("match") or {}, config.get("correlate"),
                  run.params, results, trigger, int(since.timestamp() * 1000))


# -- what happens to the step -------------------------------------------------------------------------------------


def begin(change: Change, node: NodeSpec, task: TaskRun, now: datetime) -> None:
    """The step became ready: it waits (no job); its timeout and, for an event, its look-back are timers."""
    config = node.wait or {}
    task.attempt += 1
    task.state, task.queued_at, task.started_at = TaskState.WAITING, now, now
    task.finished_at = task.worker = task.error = task.error_type = task.retry_at = task.via = None
    change.tasks.add(task.node)
    if config.get("timeout_s") is not None:
        change.timers.append(Timer(change.run.id, task.node, task.attempt, now + timedelta(seconds=config["timeout_s"])))
    if not config.get("approval"):
        change.timers.append(Timer(change.run.id, task.node + LOOKBACK, task.attempt, now))


def _waiting(change: Change, node: str, attempt: int | None = None) -> TaskRun | None:
    task = change.run.tasks.get(node)
    if change.run.status is not RunStatus.RUNNING or task is None or task.state is not TaskState.WAITING:
        return None
    return task if attempt is None or task.attempt == attempt else None


def _succeed(change: Change, task: TaskRun, result: Any, via: dict[str, Any], now: datetime) -> None:
    task.state, task.result, task.via, task.finished_at, task.error = TaskState.SUCCEEDED, result, via, now, None
    change.tasks.add(task.node)
    change.finished_tasks.append(task)


def resolve(change: Change, hit: WaitHit, now: datetime) -> bool:
    """Apply a hit; False when the step no longer waits for it (resolved already, timed out, cancelled) or
    never did: a hit comes from a waiter read back from Redis, so the step must be an event wait of the
    hit's event type, and the event must match the run's own pattern and correlation (an approval step
    is resolved by an approval only)."""
    task = _waiting(change, hit.node, hit.attempt)
    if task is None:
        return False
    waiter = waiter_of(change.run, task)
    event = hit.event
    if waiter is None or event is None or event.type != waiter.event:
        log.warning("run %s: step %s does not wait for a %s event; the hit is ignored", change.run.id, task.node,
                    event.type if event is not None else "missing")
        return False
    view = event_view(event)
    if not waiter.matches(event, view):
        log.warning("run %s: event %s does not match step %s's own pattern and correlation; the hit is ignored",
                    change.run.id, event.id, task.node)
        return False
    _succeed(change, task, view.get("data"), hit.via, now)
    return True


def note_error(change: Change, node: str, attempt: int, message: str) -> bool:
    """Show on a waiting step why an event could not be matched with it (its correlation failed to
    evaluate): the step goes on waiting, its `error` says why; False when it no longer waits."""
    task = _waiting(change, node, attempt)
    if task is None or task.error == message:
        return False
    task.error = message
    change.tasks.add(task.node)
    return True


def approve(change: Change, node: str | None, data: Any, by: str, now: datetime, request: str | None = None) -> bool:
    """A person approved approval step `node`; False when it is not waiting for an approval. The step's
    `via` names the approver and the approval request (`request`, its id) that resolved it."""
    task = _waiting(change, node or "")
    if task is None or not wait_config(change.run, task.node).get("approval"):
        return False
    via = {"approved_by": by or "unknown", "at": iso_utc(now), **({"request": request} if request else {})}
    _succeed(change, task, {} if data is None else data, via, now)
    return True


def expire(change: Change, task: TaskRun, now: datetime) -> None:
    """The step's timeout fired while it waited: it fails, or succeeds with its default, per `on_timeout`."""
    config = wait_config(change.run, task.node)
    policy = config.get("on_timeout", "fail")
    what = "approval" if config.get("approval") else f"matching {config.get('event')} event"
    if isinstance(policy, Mapping):
        _succeed(change, task, policy.get("default"), {"timed_out": True}, now)
        return
    task.state, task.finished_at, task.via = TaskState.FAILED, now, {"timed_out": True}
    task.error = f"no {what} within {config.get('timeout_s', 0):g}s"
    change.tasks.add(task.node)
    change.finished_tasks.append(task)
