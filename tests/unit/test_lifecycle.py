"""④ ⑧ A run's lifecycle: creation, queueing for a slot, cancel, timeout, retry, rerun and the end, with the
slots, overlap guards and cancel markers each takes and frees. Pure: no Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator import WorkflowError, task, workflow
from orchestrator.workflows import lifecycle
from orchestrator.workflows.advance import RUN_TIMER, Change, Timer, apply_record
from orchestrator.workflows.lifecycle import Effects, Guard, Resources, RunRequest, cancels
from orchestrator.workflows.pools import Claim
from orchestrator.workflows.records import RecordKind, TaskRecord
from orchestrator.workflows.runs import EventRef, Run, RunStatus
from orchestrator.workflows.spec import WorkflowSpec

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
EVENT = EventRef(id="e-1", source="/test", type="test")


@task
def plain(x: Any = None) -> Any:
    return x


@workflow(timeout_s=60)
def timed(x: int) -> None:
    plain(plain.with_options(name="first")(x))


@workflow(concurrency=1)
def limited(x: int) -> None:
    plain.with_options(name="first")(x)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def start(spec: WorkflowSpec, run_id: str = "r", **params: Any) -> Change:
    return lifecycle.new_run(run_id, spec, "rule", EVENT, params or {"x": 1}, NOW)


def states(change: Change) -> dict[str, str]:
    return {name: str(t.state) for name, t in change.run.tasks.items()}


def report(change: Change, node: str, kind: RecordKind, *, result: Any = None, seconds: float = 1) -> None:
    record = TaskRecord(kind, change.run.id, node, change.run.tasks[node].attempt, at(seconds).timestamp(), worker="w",
                        result=result, error="boom" if kind is RecordKind.FAILED else None)
    assert apply_record(change, record, at(seconds))


def finish(change: Change, node: str, result: Any, seconds: float = 1) -> None:
    report(change, node, RecordKind.STARTED, seconds=seconds)
    report(change, node, RecordKind.SUCCEEDED, result=result, seconds=seconds)


# -- timeout and cancel --------------------------------------------------------------------------------------


def test_a_run_times_out_and_cancels_what_is_left_with_markers_for_its_attempts() -> None:
    change = start(timed.spec)
    assert change.timers == [Timer("r", RUN_TIMER, 0, at(60))]
    report(change, "first", RecordKind.STARTED)

    later = Change(change.run)
    assert lifecycle.timeout(later, at(60))
    assert later.run.status is RunStatus.FAILED and later.run.error == "the run timed out after 60s"
    assert states(later) == {"first": "cancelled", "plain": "cancelled"}
    assert later.done == {"r\x1ffirst\x1f1"} and later.cancel_attempts == {"first": 1}
    assert not lifecycle.timeout(Change(later.run), at(61)), "a finished run does not time out twice"


def test_cancel_stops_running_attempts_and_withdraws_queued_jobs() -> None:
    change = start(timed.spec)
    assert lifecycle.cancel(change, at(1), "alice")
    assert change.run.status is RunStatus.CANCELLED and change.run.error == "cancelled by alice"
    assert change.withdrawn == [("default", "r-first-1")] and change.cancel_attempts == {"first": 1}
    assert not lifecycle.cancel(change, at(2))


# -- defect: retrying a cancelled or timed-out run cancelled it again ---------------------------------------


@pytest.mark.parametrize("stop", ["cancel", "timeout"])
def test_a_retried_attempt_is_not_stopped_by_the_cancel_before_it(stop: str) -> None:
    change = start(timed.spec)
    report(change, "first", RecordKind.STARTED)
    stopped = Change(change.run)
    lifecycle.cancel(stopped, at(1)) if stop == "cancel" else lifecycle.timeout(stopped, at(60))
    markers, ended_as = stopped.cancel_attempts, stopped.run.status

    again = Change(stopped.run)
    assert lifecycle.retry(again, at(61), Resources(), Effects())

    (dispatch,) = again.dispatches
    assert (dispatch.node, dispatch.attempt) == ("first", 2)
    assert cancels(markers.get("first"), 1), "the cancelled attempt is stopped"
    assert not cancels(markers.get("first"), dispatch.attempt), "the retry's attempt is not"
    assert again.run.status is RunStatus.RUNNING and again.was is ended_as
    assert again.timers == [Timer("r", RUN_TIMER, 0, at(121))], "a retried run gets its timeout again"


def test_cancel_then_retry_then_rerun() -> None:
    change = start(timed.spec)
    lifecycle.cancel(change, at(1), "alice")

    again = Change(change.run)
    assert lifecycle.retry(again, at(3), Resources(), Effects())
    assert again.dirty and again.run.status is RunStatus.RUNNING
    assert [(d.node, d.attempt) for d in again.dispatches] == [("first", 2)]
    assert again.run.tasks["first"].history[0]["state"] == "cancelled"
    finish(again, "first", 5, seconds=4)
    finish(again, "plain", 5, seconds=5)
    assert again.run.status is RunStatus.SUCCEEDED
    assert not lifecycle.retry(Change(again.run), at(6), Resources(), Effects())

    copy = lifecycle.rerun(again.run, "r2", at(7), Resources(), Effects(), from_node="plain")
    assert copy.created and copy.run.rerun_of == "r" and copy.run.id == "r2"
    assert states(copy) == {"first": "succeeded", "plain": "queued"}
    assert copy.dispatches[0].args == [5]
    full = lifecycle.rerun(again.run, "r3", at(7), Resources(), Effects())
    assert states(full) == {"first": "queued", "plain": "pending"}
    with pytest.raises(WorkflowError, match="has no task 'nope'"):
        lifecycle.rerun(again.run, "r4", at(7), Resources(), Effects(), from_node="nope")


# -- defect: retry and rerun bypassed the workflow's concurrency limit ---------------------------------------


POOL = "workflow/limited"
CLAIM = Claim(POOL, 1, "workflow", "limited")


def failed(spec: WorkflowSpec, run_id: str) -> Change:
    change = start(spec, run_id)
    report(change, "first", RecordKind.STARTED)
    report(change, "first", RecordKind.FAILED)
    assert change.run.status is RunStatus.FAILED
    return Change(change.run)


def test_a_retry_takes_a_free_slot_like_a_new_run() -> None:
    change, effects = failed(limited.spec, "r1"), Effects()
    resources = Resources(free={POOL: 1})

    assert lifecycle.retry(change, at(5), resources, effects)

    assert change.run.status is RunStatus.RUNNING and [d.node for d in change.dispatches] == ["first"]
    assert effects.occupy == [(CLAIM, "r1")] and resources.free == {POOL: 0}


def test_a_retry_without_a_free_slot_waits_queued_and_dispatches_nothing() -> None:
    change, effects = failed(limited.spec, "r1"), Effects()

    assert lifecycle.retry(change, at(5), Resources(free={POOL: 0}), effects)

    assert change.run.status is RunStatus.QUEUED and change.dispatches == [] and effects.occupy == []
    assert effects.wait == [(CLAIM, "r1", at(5).timestamp() * 1000)]
    assert states(change)["first"] == "pending"
    assert lifecycle.start(change, at(9)), "it starts when the slot it waits for frees"
    assert change.run.status is RunStatus.RUNNING and [d.attempt for d in change.dispatches] == [2]


def test_a_rerun_takes_a_slot_or_waits_like_a_new_run() -> None:
    old = failed(limited.spec, "r1").run
    effects = Effects()
    resources = Resources(free={POOL: 1})

    first = lifecycle.rerun(old, "r2", at(5), resources, effects)
    second = lifecycle.rerun(old, "r3", at(5), resources, effects)

    assert first.run.status is RunStatus.RUNNING and second.run.status is RunStatus.QUEUED
    assert effects.occupy == [(CLAIM, "r2")] and effects.wait == [(CLAIM, "r3", at(5).timestamp() * 1000)]
    assert second.dispatches == []


def test_a_new_run_takes_a_slot_or_waits() -> None:
    effects, resources = Effects(), Resources(free={POOL: 1})
    requests = [RunRequest(f"r{i}", "rule", limited.spec, EVENT, {"x": i}) for i in range(2)]

    created = [lifecycle.create(r, NOW, resources, effects) for r in requests]

    assert [c.run.status for c in created if c] == [RunStatus.RUNNING, RunStatus.QUEUED]
    assert effects.occupy == [(CLAIM, "r0")] and effects.wait == [(CLAIM, "r1", NOW.timestamp() * 1000)]


def test_runs_that_end_free_their_slot_and_guard() -> None:
    change = start(limited.spec, "r1")
    change.run.guard = "nightly/rule"
    finish(change, "first", 1)
    effects = Effects()

    lifecycle.ended([change, start(limited.spec, "r2")], effects)

    assert effects.vacate == [(CLAIM, "r1")] and effects.release == [("nightly/rule", "r1")]


# -- rerun of the current version ----------------------------------------------------------------------------


@workflow(name="timed")
def timed_v2(x: int) -> None:
    plain.with_options(name="first")(x)
    plain.with_options(name="second")(x)


def test_a_rerun_uses_the_workflows_current_version_and_reuses_the_tasks_it_still_has() -> None:
    old = start(timed.spec).run
    finish(Change(old), "first", 1)

    new = lifecycle.rerun(old, "r2", at(5), Resources(), Effects(), spec=timed_v2.spec, from_node="second")

    assert new.run.spec.digest == timed_v2.spec.digest != old.spec.digest
    assert states(new) == {"first": "succeeded", "second": "queued"}
    assert [d.version for d in new.dispatches] == [timed_v2.spec.digest]


# -- overlap guards ------------------------------------------------------------------------------------------


def test_a_guarded_request_is_skipped_or_held_while_its_schedule_runs() -> None:
    held = Resources(guards={"nightly/rule": Guard(holder="r0")})
    effects = Effects()
    skip = RunRequest("r1", "rule", timed.spec, EVENT, {"x": 1}, guard="nightly/rule", overlap="skip")
    queue = RunRequest("r2", "rule", timed.spec, EVENT, {"x": 1}, guard="nightly/rule", overlap="queue-one", raw=b"{}")

    assert lifecycle.create(skip, NOW, held, effects) is None
    assert lifecycle.create(queue, NOW, held, effects) is None
    assert effects.overlaps == [("nightly", "skipped"), ("nightly", "queued")] and effects.queue == {"nightly/rule": b"{}"}

    free = Resources()
    taken = lifecycle.create(skip, NOW, free, effects)
    assert taken is not None and taken.run.guard == "nightly/rule" and effects.take == {"nightly/rule": "r1"}


def test_the_steering_log_names_who_asked_keeps_the_latest_and_survives_a_round_trip() -> None:
    change = start(timed.spec)
    noted = Change(change.run)
    assert not noted.dirty
    lifecycle.note(noted, "cancel", "ops-alice", at(1))
    assert noted.dirty, "a run steered without another change is still written"
    for n in range(lifecycle.STEERING_KEPT + 5):
        lifecycle.note(noted, "retry", f"bot-{n}", at(2 + n))
    log = noted.run.steering
    assert len(log) == lifecycle.STEERING_KEPT and log[-1]["by"] == f"bot-{lifecycle.STEERING_KEPT + 4}"
    assert Run.from_fields({k.encode(): v for k, v in noted.run.to_fields(spec=True).items()}).steering == log


def test_a_steering_log_read_back_from_redis_keeps_only_well_formed_entries() -> None:
    fields = {k.encode(): v for k, v in start(timed.spec).run.to_fields(spec=True).items()}
    meta = json.loads(fields[b"meta"])
    good = {"action": "cancel", "by": "ops", "at": at(1).isoformat()}
    meta["steering"] = [good, "x", {"action": 1, "by": "b", "at": at(1).isoformat()}, {**good, "at": "soon"}]
    fields[b"meta"] = json.dumps(meta).encode()
    assert Run.from_fields(fields).steering == [good]
    meta["steering"] = {"not": "a list"}
    fields[b"meta"] = json.dumps(meta).encode()
    assert Run.from_fields(fields).steering == []


# -- defect: a run that never started was retried or rerun with no parameters, around its chain cut --------


@pytest.mark.parametrize("cut", [False, True], ids=["params-did-not-render", "chain-cut"])
def test_a_run_that_never_started_is_neither_retried_nor_rerun(cut: bool) -> None:
    request = RunRequest("n", "rule", timed.spec, EVENT, None, "rule rule: chain depth 11 over limit 10" if cut
                         else "rule rule: 'x' is undefined", depth=11 if cut else 0, cut=cut)
    record = lifecycle.create(request, NOW, Resources(), Effects())
    assert record is not None
    run = Run.from_fields({k.encode(): v for k, v in record.run.to_fields(spec=True).items()})  # as read back

    assert run.never_started
    again = Change(run)
    assert not lifecycle.retry(again, at(1), Resources(), Effects())
    assert not again.dirty and not again.dispatches and run.status is RunStatus.FAILED
    with pytest.raises(WorkflowError, match="never started"):
        lifecycle.rerun(run, "n2", at(1), Resources(), Effects())


def test_runs_that_did_start_or_only_waited_are_not_never_started() -> None:
    failed = start(timed.spec)
    report(failed, "first", RecordKind.STARTED)
    report(failed, "first", RecordKind.FAILED)
    failed.run.starts = 0  # written before `starts` was kept: its dispatched task says it started
    assert failed.run.status is RunStatus.FAILED and not failed.run.never_started
    assert failed.run.begun == 1

    queued = lifecycle.new_run("q", limited.spec, "rule", EVENT, {"x": 1}, NOW, queued=True)
    lifecycle.cancel(queued, at(1))
    assert queued.run.begun == 0 and not queued.run.never_started, "cancelled while queued: it may be retried"
    assert lifecycle.retry(Change(queued.run), at(2), Resources(), Effects())
