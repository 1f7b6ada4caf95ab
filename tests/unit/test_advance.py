"""④ ⑦ ⑧ Runs advanced by the pure core: dispatch what is ready, apply worker records, skip, finish."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator import task, workflow
from orchestrator.workflows.advance import Change, Dispatch, apply_record
from orchestrator.workflows.lifecycle import failed_run, new_run
from orchestrator.workflows.policy import upstream_ready
from orchestrator.workflows.records import RecordKind, TaskRecord
from orchestrator.workflows.runs import EventRef, Run, RunStatus, TaskRun, TaskState, derive_run_id, job_id
from orchestrator.workflows.spec import WorkflowSpec

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=30)
EVENT = EventRef(id="e-1", source="/shop", type="order.created")


@task
def fetch(order_id: str) -> Any:
    return {"id": order_id}


@task(queue="payments")
def charge(order: Any, amount: float) -> Any:
    return {"charged": amount}


@task
def reserve(order: Any) -> Any:
    return {"reserved": 1}


@task
def confirm(payment: Any, stock: Any) -> Any:
    return "done"


@task
def notify(message: Any) -> Any:
    return None


@workflow
def orders(order_id: str, amount: float = 9.5) -> None:
    """fetch -> (charge, reserve) -> confirm -> notify"""
    order = fetch(order_id)
    done = confirm(charge(order, amount), reserve(order))
    notify(done)


@workflow
def picky(order_id: str) -> None:
    """The second task needs an item the first task's result may not have."""
    notify(fetch(order_id)["customer"])


@workflow
def broken(order_id: str) -> None:
    """The root task needs an item of a string parameter: it can never be built."""
    notify(order_id["name"])


def start(spec: WorkflowSpec = orders.spec, params: dict[str, Any] | None = None) -> Change:
    return new_run("run1", spec, "rule-a", EVENT, params or {"order_id": "A-1", "amount": 9.5}, NOW)


def at(seconds: float) -> float:
    return NOW.timestamp() + seconds


def record(kind: RecordKind, node: str, attempt: int = 1, *, seconds: float = 1, result: Any = None,
           error: str | None = None, worker: str = "w1", duration_s: float | None = None) -> TaskRecord:
    return TaskRecord(kind=kind, run="run1", node=node, attempt=attempt, at_s=at(seconds), worker=worker,
                      result=result, error=error, duration_s=duration_s)


def succeed(change: Change, node: str, result: Any = None, seconds: float = 2) -> None:
    assert apply_record(change, record(RecordKind.STARTED, node, seconds=seconds - 1), LATER)
    assert apply_record(change, record(RecordKind.SUCCEEDED, node, seconds=seconds, result=result), LATER)


def states(change: Change) -> dict[str, TaskState]:
    return {name: t.state for name, t in change.run.tasks.items()}


def dispatched(change: Change) -> list[str]:
    return [d.node for d in change.dispatches]


# -- starting ----------------------------------------------------------------------------------------


def test_a_new_run_dispatches_only_its_roots_with_resolved_arguments() -> None:
    change = start()

    assert change.created and change.dirty and not change.finished
    assert change.dispatches == [Dispatch(run_id="run1", workflow="orders", version=change.run.spec.digest,
                                          node="fetch", task="fetch", attempt=1, queue="default",
                                          job_id="run1-fetch-1", args=["A-1"])]
    assert states(change) == {"fetch": TaskState.QUEUED, "charge": TaskState.PENDING,
                              "reserve": TaskState.PENDING, "confirm": TaskState.PENDING,
                              "notify": TaskState.PENDING}
    run = change.run
    assert (run.id, run.workflow, run.rule, run.event, run.status) == ("run1", "orders", "rule-a", EVENT,
                                                                      RunStatus.RUNNING)
    assert run.created_at == NOW and run.tasks["fetch"].queued_at == NOW


def test_job_ids_are_derived_from_run_node_and_attempt() -> None:
    assert job_id("run1", "fetch", 3) == "run1-fetch-3"


# -- applying records --------------------------------------------------------------------------------


def test_started_then_succeeded_moves_the_task_and_dispatches_its_dependents() -> None:
    change = start()
    change.dispatches.clear()

    assert apply_record(change, record(RecordKind.STARTED, "fetch", seconds=1, worker="w7"), LATER)
    fetch_run = change.run.tasks["fetch"]
    assert fetch_run.state is TaskState.RUNNING
    assert fetch_run.started_at == NOW + timedelta(seconds=1) and fetch_run.worker == "w7"
    assert change.started == [fetch_run] and change.dispatches == []

    assert apply_record(change, record(RecordKind.SUCCEEDED, "fetch", seconds=3, result={"id": "A-1"}), LATER)
    assert fetch_run.state is TaskState.SUCCEEDED and fetch_run.result == {"id": "A-1"}
    assert fetch_run.finished_at == NOW + timedelta(seconds=3) and fetch_run.duration_s == 2
    assert change.finished_tasks == [fetch_run]
    assert dispatched(change) == ["charge", "reserve"]
    charge_dispatch = change.dispatches[0]
    assert charge_dispatch.args == [{"id": "A-1"}, 9.5] and charge_dispatch.queue == "payments"
    assert charge_dispatch.job_id == "run1-charge-1"
    assert change.tasks == {"fetch", "charge", "reserve"}


def test_a_success_without_a_start_record_derives_the_start_from_the_duration() -> None:
    change = start()

    assert apply_record(change, record(RecordKind.SUCCEEDED, "fetch", seconds=5, duration_s=1.5), LATER)

    assert change.run.tasks["fetch"].started_at == NOW + timedelta(seconds=3.5)


def test_a_fan_in_task_waits_for_both_upstreams_and_receives_both_results() -> None:
    change = start()
    succeed(change, "fetch", {"id": "A-1"})
    change.dispatches.clear()

    succeed(change, "charge", {"charged": 9.5})
    assert dispatched(change) == []
    assert change.run.tasks["confirm"].state is TaskState.PENDING

    succeed(change, "reserve", {"reserved": 1})
    assert dispatched(change) == ["confirm"]
    assert change.dispatches[0].args == [{"charged": 9.5}, {"reserved": 1}]


def test_a_run_whose_tasks_all_succeed_succeeds() -> None:
    change = start()
    for node in ("fetch", "charge", "reserve", "confirm", "notify"):
        succeed(change, node, {"node": node})

    run = change.run
    assert run.status is RunStatus.SUCCEEDED and run.error is None
    assert run.finished_at == LATER and run.duration_s == 30
    assert change.finished


def test_a_failure_skips_every_dependent_and_fails_the_run() -> None:
    change = start()
    succeed(change, "fetch", {"id": "A-1"})
    succeed(change, "reserve", {"reserved": 1})
    assert apply_record(change, record(RecordKind.STARTED, "charge"), LATER)

    error = "ValueError: card declined\nTraceback (most recent call last):\n  ..."
    assert apply_record(change, record(RecordKind.FAILED, "charge", seconds=4, error=error), LATER)

    tasks = change.run.tasks
    assert tasks["charge"].state is TaskState.FAILED and tasks["charge"].error == error
    assert (tasks["confirm"].state, tasks["confirm"].error) == (TaskState.SKIPPED, "upstream task charge failed")
    assert (tasks["notify"].state, tasks["notify"].error) == (TaskState.SKIPPED, "upstream task confirm was skipped")
    assert tasks["notify"].finished_at == LATER
    run = change.run
    assert run.status is RunStatus.FAILED
    assert run.error == "task charge failed: ValueError: card declined"
    assert run.finished_at == LATER and change.finished


def test_a_run_with_a_failure_finishes_only_when_the_running_tasks_are_done() -> None:
    change = start()
    succeed(change, "fetch", {"id": "A-1"})

    assert apply_record(change, record(RecordKind.FAILED, "charge", error="boom"), LATER)
    assert states(change)["confirm"] is TaskState.SKIPPED
    assert change.run.status is RunStatus.RUNNING and not change.finished

    succeed(change, "reserve", {"reserved": 1})
    assert change.run.status is RunStatus.FAILED and change.run.error == "task charge failed: boom"


def test_a_failure_without_an_error_text_still_says_it_failed() -> None:
    change = start()

    assert apply_record(change, record(RecordKind.FAILED, "fetch"), LATER)

    assert change.run.tasks["fetch"].error == "failed"
    assert change.run.error == "task fetch failed: failed"


# -- stale and duplicate records ---------------------------------------------------------------------


def snapshot(change: Change) -> Any:
    return copy.deepcopy((change.run.to_dict(), change.tasks, change.dispatches, change.started,
                          change.finished_tasks, change.finished))


def test_a_duplicate_success_is_ignored() -> None:
    change = start()
    succeed(change, "fetch", {"id": "A-1"})
    before = snapshot(change)

    assert not apply_record(change, record(RecordKind.SUCCEEDED, "fetch", result={"id": "other"}), LATER)

    assert snapshot(change) == before


def test_a_record_of_another_attempt_is_ignored() -> None:
    change = start()
    before = snapshot(change)

    assert not apply_record(change, record(RecordKind.STARTED, "fetch", attempt=2), LATER)
    assert not apply_record(change, record(RecordKind.SUCCEEDED, "fetch", attempt=0), LATER)

    assert snapshot(change) == before


def test_a_start_after_the_end_is_ignored() -> None:
    change = start()
    succeed(change, "fetch", {"id": "A-1"})
    before = snapshot(change)

    assert not apply_record(change, record(RecordKind.STARTED, "fetch"), LATER)
    assert not apply_record(change, record(RecordKind.FAILED, "fetch", error="late"), LATER)

    assert snapshot(change) == before


def test_a_second_start_is_ignored() -> None:
    change = start()
    assert apply_record(change, record(RecordKind.STARTED, "fetch", seconds=1), LATER)
    before = snapshot(change)

    assert not apply_record(change, record(RecordKind.STARTED, "fetch", seconds=9, worker="w2"), LATER)

    assert snapshot(change) == before


def test_records_for_pending_or_unknown_tasks_are_ignored() -> None:
    change = start()
    before = snapshot(change)

    assert not apply_record(change, record(RecordKind.SUCCEEDED, "charge", attempt=0), LATER)
    assert not apply_record(change, record(RecordKind.SUCCEEDED, "nobody"), LATER)

    assert snapshot(change) == before


# -- arguments that cannot be built ------------------------------------------------------------------


def test_an_argument_that_cannot_be_built_fails_the_task_without_dispatching_it() -> None:
    change = new_run("run1", picky.spec, "rule-a", EVENT, {"order_id": "A-1"}, NOW)
    change.dispatches.clear()

    succeed(change, "fetch", {"id": "A-1"})

    notify_run = change.run.tasks["notify"]
    assert dispatched(change) == []
    assert notify_run.state is TaskState.FAILED and notify_run.attempt == 0
    assert notify_run.error == "cannot build the task's arguments: result of fetch has no item 'customer'"
    assert change.run.status is RunStatus.FAILED
    assert change.run.error == ("task notify failed: cannot build the task's arguments: "
                                "result of fetch has no item 'customer'")


def test_a_root_that_cannot_be_built_fails_the_new_run_at_once() -> None:
    change = new_run("run1", broken.spec, "rule-a", EVENT, {"order_id": "A-1"}, NOW)

    assert change.dispatches == []
    assert change.run.status is RunStatus.FAILED and change.finished
    assert change.run.error == ("task notify failed: cannot build the task's arguments: "
                                "parameter order_id has no item 'name'")


# -- failed runs, ids, storage -----------------------------------------------------------------------


def test_a_run_that_failed_before_starting_skips_every_task() -> None:
    change = failed_run("run1", orders.spec, "rule-a", EVENT, "rule rule-a: params.x: 'y' is undefined", NOW)

    run = change.run
    assert change.created and change.finished and change.dispatches == []
    assert run.status is RunStatus.FAILED and run.error == "rule rule-a: params.x: 'y' is undefined"
    assert run.finished_at == NOW and run.params == {}
    assert {t.state for t in run.tasks.values()} == {TaskState.SKIPPED}
    assert {t.error for t in run.tasks.values()} == {"the run failed before it started"}


def test_run_ids_are_deterministic_and_distinct_per_rule_source_and_event() -> None:
    one = derive_run_id("rule-a", "/shop", "e-1")

    assert derive_run_id("rule-a", "/shop", "e-1") == one
    assert len({one, derive_run_id("rule-b", "/shop", "e-1"), derive_run_id("rule-a", "/shop2", "e-1"),
                derive_run_id("rule-a", "/shop", "e-2")}) == 4
    assert derive_run_id("a", "bc", "d") != derive_run_id("ab", "c", "d")
    assert len(one) == 24 and int(one, 16) >= 0


def as_stored(fields: dict[str, bytes]) -> dict[bytes, bytes]:
    return {key.encode(): value for key, value in fields.items()}


def test_a_run_round_trips_through_its_hash_fields() -> None:
    change = start()
    succeed(change, "fetch", {"id": "A-1", "lines": [1, 2]})
    assert apply_record(change, record(RecordKind.FAILED, "charge", error="boom"), LATER)

    again = Run.from_fields(as_stored(change.run.to_fields(spec=True)))

    assert again == change.run
    assert list(again.tasks) == [n.name for n in orders.spec.nodes]


def test_a_finished_run_round_trips_through_its_hash_fields() -> None:
    change = failed_run("run1", orders.spec, "rule-a", EVENT, "nope", NOW)

    assert Run.from_fields(as_stored(change.run.to_fields(spec=True))) == change.run


def test_to_fields_writes_only_the_given_tasks() -> None:
    run = start().run

    assert set(run.to_fields({"fetch"})) == {"meta", "t:fetch"}
    assert set(run.to_fields(set(), meta=False, spec=True)) == {"spec", "event"}


def test_a_task_run_round_trips_through_a_dict() -> None:
    task_run = TaskRun(node="n", task="t", queue="q", state=TaskState.SUCCEEDED, attempt=2, queued_at=NOW,
                       started_at=NOW + timedelta(seconds=1), finished_at=LATER, worker="w", result=[1, {"a": None}])

    assert TaskRun.from_dict(task_run.to_dict()) == task_run
    assert task_run.to_dict()["finished_at"] == "2024-05-01T12:00:30Z"


def test_task_records_round_trip_through_stream_fields() -> None:
    records = [
        record(RecordKind.STARTED, "fetch"),
        record(RecordKind.SUCCEEDED, "fetch", result={"id": "A-1"}, duration_s=0.25),
        record(RecordKind.SUCCEEDED, "fetch", result=None),
        record(RecordKind.FAILED, "fetch", attempt=3, error="boom\ntrace", duration_s=2.0),
    ]

    for original in records:
        assert TaskRecord.from_fields(as_stored(original.to_fields())) == original


# -- readiness ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("depends", "upstream", "verdict"), [
    ("all_succeeded", [], True),
    ("all_succeeded", ["succeeded", "running"], None),
    ("all_succeeded", ["succeeded", "succeeded"], True),
    ("all_succeeded", ["failed", "running"], False),
    ("all_succeeded", ["skipped", "succeeded"], False),
    ("all_finished", ["failed", "running"], None),
    ("all_finished", ["failed", "skipped", "cancelled"], True),
    ("any_failed", ["failed", "running"], True),
    ("any_failed", ["succeeded", "running"], None),
    ("any_failed", ["succeeded", "skipped"], False),
])
def test_upstream_readiness_per_dependency_policy(depends: str, upstream: list[str], verdict: bool | None) -> None:
    assert upstream_ready(depends, upstream) is verdict
