"""④ ⑧ Retries with backoff, dependency policies, conditions and fan-out. Pure (run timeouts and steering: test_lifecycle)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator import WorkflowError, task, workflow
from orchestrator.workflows.advance import DISPATCH_CHUNK, Change, Timer, apply_record, apply_timer
from orchestrator.workflows.lifecycle import new_run
from orchestrator.workflows.policy import RetryPolicy
from orchestrator.workflows.records import RecordKind, TaskRecord
from orchestrator.workflows.runs import EventRef, Run, RunStatus, TaskState
from orchestrator.workflows.spec import WorkflowSpec
from orchestrator.workflows.work import MORE_ITEMS

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
EVENT = EventRef(id="e-1", source="/test", type="test")


@task(retries={"max_retries": 2, "backoff_s": 10, "jitter": False})
def flaky(x: int) -> int:
    return x


@task
def plain(x: Any = None) -> Any:
    return x


@task
def listing(n: int) -> list[int]:
    return list(range(n))


@task
def double(item: int, factor: int = 2) -> int:
    return item * factor


@task
def total(values: list[int]) -> int:
    return sum(values)


def start(spec: WorkflowSpec, **params: Any) -> Change:
    return new_run("r", spec, "rule", EVENT, params, NOW)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def report(change: Change, node: str, kind: RecordKind, *, attempt: int | None = None, result: Any = None,
           error_type: str | None = None, retryable: bool | None = None, seconds: float = 1) -> bool:
    attempt = attempt if attempt is not None else change.run.tasks[node].attempt
    record = TaskRecord(kind, "r", node, attempt, at(seconds).timestamp(), worker="w", result=result,
                        error="boom" if kind is RecordKind.FAILED else None, error_type=error_type,
                        retryable=retryable)
    return apply_record(change, record, at(seconds))


def run_ok(change: Change, node: str, result: Any = None, seconds: float = 1) -> None:
    assert report(change, node, RecordKind.STARTED, seconds=seconds)
    assert report(change, node, RecordKind.SUCCEEDED, result=result, seconds=seconds)


def states(change: Change) -> dict[str, str]:
    return {name: str(t.state) for name, t in change.run.tasks.items()}


# -- retries ------------------------------------------------------------------------------------------


@workflow
def retried(x: int) -> None:
    plain(flaky(x))


def test_a_failed_attempt_is_retried_after_its_backoff_then_fails_for_good() -> None:
    change = start(retried.spec, x=1)
    assert report(change, "flaky", RecordKind.FAILED, seconds=1)

    task = change.run.tasks["flaky"]
    assert task.state is TaskState.RETRYING and task.retry_at == at(11)  # backoff 10 s, no jitter
    assert change.timers == [Timer("r", "flaky", 1, at(11))]
    assert task.history[0]["attempt"] == 1 and task.history[0]["error"] == "boom"

    fresh = Change(change.run)
    assert not apply_timer(fresh, Timer("r", "flaky", 0, at(11)), at(11))  # stale timer: nothing
    assert apply_timer(fresh, Timer("r", "flaky", 1, at(11)), at(11))
    assert [(d.node, d.attempt, d.job_id) for d in fresh.dispatches] == [("flaky", 2, "r-flaky-2")]

    assert report(fresh, "flaky", RecordKind.FAILED, seconds=12)
    assert fresh.run.tasks["flaky"].retry_at == at(12 + 20)  # factor 2
    assert apply_timer(fresh, Timer("r", "flaky", 2, at(32)), at(32))
    assert report(fresh, "flaky", RecordKind.FAILED, seconds=33)  # attempt 3 of 1 + 2 retries

    assert fresh.run.tasks["flaky"].state is TaskState.FAILED
    assert len(fresh.run.tasks["flaky"].history) == 2
    assert fresh.run.tasks["plain"].state is TaskState.SKIPPED
    assert fresh.run.status is RunStatus.FAILED and fresh.finished


def test_a_late_record_of_an_earlier_attempt_is_ignored() -> None:
    change = start(retried.spec, x=1)
    report(change, "flaky", RecordKind.FAILED)
    apply_timer(change, Timer("r", "flaky", 1, at(11)), at(11))
    assert not report(change, "flaky", RecordKind.SUCCEEDED, attempt=1, result=5)
    assert change.run.tasks["flaky"].state is TaskState.QUEUED


def test_an_error_the_worker_marks_not_retryable_fails_at_once() -> None:
    change = start(retried.spec, x=1)
    report(change, "flaky", RecordKind.FAILED, retryable=False)
    assert change.run.tasks["flaky"].state is TaskState.FAILED


def test_retry_policy_only_retries_listed_errors_and_spreads_delays() -> None:
    policy = RetryPolicy(max_retries=5, backoff_s=1, factor=2, max_delay_s=4, on=("TimeoutError",))
    assert policy.should_retry(1, "TimeoutError", None) and not policy.should_retry(1, "ValueError", None)
    assert not policy.should_retry(6, "TimeoutError", None)
    delays = [policy.delay_s(n, "seed") for n in range(1, 6)]
    assert all(0.5 * b <= d <= b for d, b in zip(delays, [1, 2, 4, 4, 4], strict=True))
    assert {round(policy.delay_s(3, f"seed{i}"), 6) for i in range(20)} != {2.0}  # jittered
    assert RetryPolicy.from_value(3) == RetryPolicy(max_retries=3)
    with pytest.raises(WorkflowError, match="unknown retry option"):
        RetryPolicy.from_value({"tries": 3})


# -- dependency policies and conditions -------------------------------------------------------------------


@workflow
def cleanup_flow(x: int) -> None:
    a = plain(x)
    plain.with_options(name="always", depends="all_finished")(a)
    plain.with_options(name="on_failure", depends="any_failed")(a)
    plain.with_options(name="normal")(a)


def test_dependency_policies_when_the_upstream_fails() -> None:
    change = start(cleanup_flow.spec, x=1)
    report(change, "plain", RecordKind.FAILED)
    assert states(change) == {"plain": "failed", "always": "queued", "on_failure": "queued", "normal": "skipped"}
    always = next(d for d in change.dispatches if d.node == "always")
    assert always.args == [None]  # a result that does not exist is passed as None


def test_dependency_policies_when_the_upstream_succeeds() -> None:
    change = start(cleanup_flow.spec, x=1)
    run_ok(change, "plain", 7)
    assert states(change) == {"plain": "succeeded", "always": "queued", "on_failure": "skipped", "normal": "queued"}
    assert change.run.tasks["on_failure"].error == "no upstream task failed"


@workflow
def conditional(limit: int) -> None:
    n = plain(limit)
    big = plain.with_options(name="big", when="results.plain > 10")(n)
    plain.with_options(name="after_big")(big)
    plain.with_options(name="after_any", depends="all_finished")(big)


def test_a_false_condition_skips_the_task_and_its_strict_dependents() -> None:
    change = start(conditional.spec, limit=3)
    run_ok(change, "plain", 3)
    assert states(change) == {"plain": "succeeded", "big": "skipped", "after_big": "skipped", "after_any": "queued"}
    assert change.run.tasks["big"].error == "condition is false: results.plain > 10"

    change = start(conditional.spec, limit=30)
    run_ok(change, "plain", 30)
    assert change.run.tasks["big"].state is TaskState.QUEUED


def test_a_condition_that_cannot_be_evaluated_fails_the_task() -> None:
    @workflow
    def bad_condition(x: int) -> None:
        plain.with_options(when="results.nothing.count > 1")(x)

    change = start(bad_condition.spec, x=1)
    assert change.run.tasks["plain"].state is TaskState.FAILED
    assert "cannot start the task" in (change.run.tasks["plain"].error or "")


def test_invalid_policies_are_refused_when_the_workflow_is_defined() -> None:
    with pytest.raises(WorkflowError, match="depends must be one of"):
        @workflow
        def wrong(x: int) -> None:
            plain.with_options(depends="sometimes")(x)
    with pytest.raises(WorkflowError, match="when: invalid expression"):
        @workflow
        def wrong_when(x: int) -> None:
            plain.with_options(when="results.a >")(x)


# -- fan-out ------------------------------------------------------------------------------------------------


@workflow
def fan(n: int) -> None:
    items = listing(n)
    total(double.with_options(max_parallel=2).map(items, factor=3))


def test_a_mapped_task_runs_once_per_item_at_most_max_parallel_at_once_and_fans_in_in_order() -> None:
    change = start(fan.spec, n=3)
    run_ok(change, "listing", [1, 2, 3])
    assert states(change)["double"] == "running" and change.run.tasks["double"].items == 3
    assert [(d.node, d.args) for d in change.dispatches if d.node.startswith("double")] == [
        ("double[0]", [1]), ("double[1]", [2])]  # the item; factor=3 is written in the spec, not carried
    assert change.dispatches[-1].job_id == "r-double--1-1"

    later = Change(change.run)
    run_ok(later, "double[1]", 6)
    assert [d.node for d in later.dispatches] == ["double[2]"]
    run_ok(later, "double[2]", 9)
    run_ok(later, "double[0]", 3)
    assert change.run.tasks["double"].result == [3, 6, 9]
    assert [d.args for d in later.dispatches if d.node == "total"] == [[[3, 6, 9]]]


def test_an_empty_map_succeeds_with_an_empty_list_and_a_failed_item_fails_the_map() -> None:
    change = start(fan.spec, n=0)
    run_ok(change, "listing", [])
    assert change.run.tasks["double"].result == [] and states(change)["total"] == "queued"

    change = start(fan.spec, n=3)
    run_ok(change, "listing", [1, 2, 3])
    report(change, "double[0]", RecordKind.FAILED)
    assert states(change)["double[2]"] == "skipped"  # not started once an item failed
    run_ok(change, "double[1]", 4)
    assert states(change)["double"] == "failed" and states(change)["total"] == "skipped"
    assert change.run.tasks["double"].error == "item 0 failed: boom"


def test_mapping_over_something_else_than_a_list_fails_the_task() -> None:
    change = start(fan.spec, n=1)
    run_ok(change, "listing", {"not": "a list"})
    assert states(change)["double"] == "failed"


def test_a_stored_run_keeps_the_items_of_a_mapped_task_in_order() -> None:
    change = start(fan.spec, n=2)
    run_ok(change, "listing", [5, 6])
    stored = Run.from_fields({k.encode(): v for k, v in change.run.to_fields(spec=True).items()})
    assert list(stored.tasks) == ["listing", "double", "double[0]", "double[1]", "total"]


@workflow
def wide(n: int) -> None:
    total(double.map(listing(n)))


def test_a_long_map_is_dispatched_a_chunk_per_commit_the_rest_by_a_timer_due_at_once() -> None:
    """The first items start while the engine queues the rest, not after one commit that queues them all."""
    change = start(wide.spec, n=DISPATCH_CHUNK * 2 + 10)
    run_ok(change, "listing", list(range(DISPATCH_CHUNK * 2 + 10)))
    items = [d.node for d in change.dispatches if d.node.startswith("double[")]
    assert items == [f"double[{i}]" for i in range(DISPATCH_CHUNK)]
    [more] = change.timers
    assert (more.node, more.attempt, more.due) == ("double" + MORE_ITEMS, 0, at(1))  # due now: the next commit

    later = Change(change.run)
    assert apply_timer(later, more, at(1))
    assert [d.node for d in later.dispatches] == [f"double[{i}]" for i in range(DISPATCH_CHUNK, 2 * DISPATCH_CHUNK)]
    [again] = later.timers
    assert again.attempt == DISPATCH_CHUNK  # a member of its own: firing one never removes the next
    last = Change(change.run)
    assert apply_timer(last, again, at(1)) and len(last.dispatches) == 10 and last.timers == []
    stale = Change(change.run)
    apply_timer(stale, again, at(1))
    assert stale.dispatches == [], "nothing is dispatched twice"


def test_a_long_map_under_max_parallel_needs_no_timer() -> None:
    change = start(fan.spec, n=DISPATCH_CHUNK * 2)
    run_ok(change, "listing", list(range(DISPATCH_CHUNK * 2)))
    assert len([d for d in change.dispatches if d.node.startswith("double[")]) == 2 and change.timers == []
