"""⑧ Runs announce how they start and end: the lifecycle events derived from a batch's changes. Pure: no Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator import task, workflow
from orchestrator.engine.chronicle import unheard
from orchestrator.events.envelope import Event, event_from_mapping
from orchestrator.jsonutil import dumps
from orchestrator.rules.match import RuleIndex
from orchestrator.rules.model import Rule, RuleConfig
from orchestrator.workflows import announce, lifecycle
from orchestrator.workflows.advance import Change, apply_record, apply_timer
from orchestrator.workflows.lifecycle import Effects, Resources, RunRequest
from orchestrator.workflows.records import RecordKind, TaskRecord
from orchestrator.workflows.runs import EventRef

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
EVENT = EventRef(id="e-1", source="/shop", type="order.created")


@task
def announced_step(x: Any = None) -> Any:
    return x


@task(retries={"max_retries": 1, "backoff_s": 1})
def announced_flaky(x: Any = None) -> Any:
    return x


@workflow(timeout_s=60)
def announced_flow(x: int) -> None:
    announced_step(announced_flaky(x))


@workflow
def announced_fan(items: list[int]) -> None:
    announced_step.map(items)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def started(run_id: str = "r", depth: int = 0, **params: Any) -> Change:
    return lifecycle.new_run(run_id, announced_flow.spec, "on-orders", EVENT, params or {"x": 1}, NOW, depth=depth)


def report(change: Change, node: str, kind: RecordKind, seconds: float, error_type: str | None = None) -> None:
    task_run = change.run.tasks[node]
    record = TaskRecord(kind, change.run.id, node, task_run.attempt, at(seconds).timestamp(), worker="w",
                        error="boom" if kind is RecordKind.FAILED else None, error_type=error_type)
    assert apply_record(change, record, at(seconds))


def valid(events: list[Event]) -> list[Event]:
    """`events`, each checked to be a valid CloudEvent as orch accepts them (announce builds them unvalidated)."""
    for event in events:
        assert event_from_mapping(event.to_dict()) == event
    return events


def test_a_new_run_announces_that_it_started_with_its_causation() -> None:
    (event,) = valid(announce.announcements([started(depth=2)], NOW))

    assert (event.type, event.id, event.source, event.subject) == (announce.RUN_STARTED, "r.started.1",
                                                                    "/runs/announced_flow", "r")
    assert event.time == NOW
    assert event.extensions == {"orchrun": "r", "orchdepth": 3}, "the run's depth + 1"
    assert event.data == {"run_id": "r", "workflow": "announced_flow", "version": announced_flow.spec.digest,
                          "rule": "on-orders", "status": "running", "starts": 1, "created_at": "2026-05-01T12:00:00Z",
                          "event": {"id": "e-1", "source": "/shop", "type": "order.created"}, "params": {"x": 1}}


def test_a_run_that_succeeds_announces_its_end_with_its_duration() -> None:
    change = Change(started().run)
    for node in ("announced_flaky", "announced_step"):
        report(change, node, RecordKind.STARTED, 1)
        report(change, node, RecordKind.SUCCEEDED, 2.5)

    (event,) = valid(announce.announcements([change], at(3)))

    assert (event.type, event.id, event.time) == (announce.RUN_SUCCEEDED, "r.succeeded.1", at(2.5))
    assert event.data["status"] == "succeeded" and event.data["error"] is None
    assert event.data["duration_s"] == 2.5 and event.data["finished_at"] == "2026-05-01T12:00:02.500000Z"


def test_a_task_announces_its_failure_only_when_its_retries_are_spent_and_the_run_its_end() -> None:
    change = Change(started().run)
    report(change, "announced_flaky", RecordKind.FAILED, 1, "ValueError")
    assert valid(announce.announcements([change], at(1))) == [], "a retry is coming: nothing failed for good yet"

    (retry,) = change.timers
    change = Change(change.run)
    assert apply_timer(change, retry, at(3))
    report(change, "announced_flaky", RecordKind.FAILED, 4, "ValueError")

    task_failed, run_failed = valid(announce.announcements([change], at(4)))
    assert (task_failed.type, task_failed.id) == (announce.TASK_FAILED, "r.task.announced_flaky.2")
    assert task_failed.extensions == {"orchrun": "r", "orchdepth": 1, "orchtask": "announced_flaky"}
    assert task_failed.data["task"]["node"] == "announced_flaky" and task_failed.data["task"]["attempt"] == 2
    assert task_failed.data["error"] == {"type": "ValueError", "message": "boom"}
    assert (run_failed.type, run_failed.id) == (announce.RUN_FAILED, "r.failed.1")
    assert run_failed.data["error"] == {"type": "ValueError", "message": "task announced_flaky failed: boom"}


def test_cancel_and_timeout_announce_their_own_types() -> None:
    cancelled = Change(started("c").run)
    lifecycle.cancel(cancelled, at(1), "alice")
    timed_out = Change(started("t").run)
    lifecycle.timeout(timed_out, at(60))

    ends = valid(announce.announcements([cancelled, timed_out], at(60)))

    assert [(e.type, e.id) for e in ends] == [(announce.RUN_CANCELLED, "c.cancelled.1"),
                                              (announce.RUN_TIMED_OUT, "t.timed_out.1")]
    assert ends[0].data["error"] == {"type": "Cancelled", "message": "cancelled by alice"}
    assert ends[1].data["error"] == {"type": "RunTimeout", "message": "the run timed out after 60s"}
    assert ends[1].data["status"] == "failed"


def test_a_run_whose_parameters_did_not_render_announces_only_its_failure() -> None:
    request = RunRequest("p", "on-orders", announced_flow.spec, EVENT, None, "rule on-orders: 'x' is undefined")
    change = lifecycle.create(request, NOW, Resources(), Effects())
    assert change is not None

    (event,) = valid(announce.announcements([change], NOW))

    assert (event.type, event.id) == (announce.RUN_FAILED, "p.failed.0")
    assert event.data["error"] == {"type": "InvalidParams", "message": "rule on-orders: 'x' is undefined"}


def test_a_run_cut_for_its_chain_depth_announces_nothing() -> None:
    request = RunRequest("k", "on-orders", announced_flow.spec, EVENT, None,
                         "rule on-orders: chain depth 11 over limit 10", depth=11, cut=True)
    change = lifecycle.create(request, NOW, Resources(), Effects())
    assert change is not None and change.cut and change.run.depth == 11

    assert valid(announce.announcements([change], NOW)) == []


def test_a_retried_run_announces_its_second_start_and_end_under_new_ids() -> None:
    change = Change(started().run)
    lifecycle.cancel(change, at(1))
    again = Change(change.run)
    assert lifecycle.retry(again, at(2), Resources(), Effects())
    lifecycle.cancel(again, at(3))

    assert [e.id for e in valid(announce.announcements([again], at(3)))] == ["r.started.2", "r.cancelled.2"]


def test_a_queued_run_announces_its_start_when_it_gets_its_slot() -> None:
    queued = lifecycle.new_run("q", announced_flow.spec, "on-orders", EVENT, {"x": 1}, NOW, queued=True)
    assert valid(announce.announcements([queued], NOW)) == []
    later = Change(queued.run)
    assert lifecycle.start(later, at(5))
    assert [(e.type, e.time) for e in valid(announce.announcements([later], at(5)))] == [(announce.RUN_STARTED, at(5))]


def test_announcements_stay_bounded_whatever_the_run_holds() -> None:
    change = started(x="p" * 100_000)
    change.run.error = "e" * 100_000
    lifecycle.cancel(change, at(1), "x" * 100_000)

    started_event, cancelled = valid(announce.announcements([change], at(1)))

    assert started_event.data["params_omitted"] is True and "params" not in started_event.data
    assert len(cancelled.data["error"]["message"]) == announce.MESSAGE_MAX_CHARS
    assert all(len(dumps(e.to_dict())) < announce.MAX_BYTES for e in (started_event, cancelled))


def test_the_engine_skips_validating_only_its_own_announcements_that_no_rule_listens_to() -> None:
    index = RuleIndex([Rule.from_config(RuleConfig(name="chain", type="orch.run.succeeded", workflow="w"))])
    body = {"specversion": "1.0", "id": "r.failed.1", "source": "/runs/w", "type": "orch.run.failed"}

    assert unheard(index, body)
    assert not unheard(index, {**body, "type": "orch.run.succeeded"}), "a rule listens: validated and planned"
    assert not unheard(index, {**body, "source": "/shop"}), "not the engine's"
    assert not unheard(index, {**body, "type": "order.created"})
    assert not unheard(index, ["not", "an", "event"])


TRACEBACK = 'Traceback (most recent call last):\n  File "/app/flows.py", line 3, in step\n    raise ValueError("no")\n' \
            "ValueError: no such order\n"


def test_a_mapped_task_that_fails_is_announced_once_naming_its_failed_items() -> None:
    change = lifecycle.new_run("m", announced_fan.spec, "on-orders", EVENT, {"items": [1, 2, 3]}, NOW)
    items = [f"announced_step[{i}]" for i in range(3)]
    assert all(change.run.tasks[item].attempt == 1 for item in items)
    change = Change(change.run)
    report(change, items[0], RecordKind.FAILED, 1, "ValueError")
    assert valid(announce.announcements([change], at(1))) == [], \
        "an item's failure is its mapped task's, announced when that fails"

    change = Change(change.run)
    report(change, items[1], RecordKind.FAILED, 2, "KeyError")
    report(change, items[2], RecordKind.SUCCEEDED, 2)
    task_failed, run_failed = valid(announce.announcements([change], at(2)))

    assert (task_failed.type, task_failed.id) == (announce.TASK_FAILED, "m.task.announced_step.s1")
    assert task_failed.extensions["orchtask"] == "announced_step"
    about = task_failed.data["task"]
    assert (about["node"], about["items"], about["failed_items_count"]) == ("announced_step", 3, 2)
    assert about["failed_items"] == [
        {"node": items[0], "index": 0, "attempt": 1, "error": {"type": "ValueError", "message": "boom"}},
        {"node": items[1], "index": 1, "attempt": 1, "error": {"type": "KeyError", "message": "boom"}}]
    assert task_failed.data["error"] == {"type": "ValueError", "message": "item 0 failed: boom"}
    assert run_failed.data["error"] == {"type": "ValueError",
                                        "message": "task announced_step failed: item 0 failed: boom"}


def test_a_mapped_task_that_fails_again_after_a_retry_is_announced_again() -> None:
    change = lifecycle.new_run("m", announced_fan.spec, "on-orders", EVENT, {"items": [1]}, NOW)
    report(change, "announced_step[0]", RecordKind.FAILED, 1)
    again = Change(change.run)
    assert lifecycle.retry(again, at(2), Resources(), Effects())
    report(again, "announced_step[0]", RecordKind.FAILED, 3)

    ids = [e.id for e in valid(announce.announcements([again], at(3)))]
    assert ids == ["m.started.2", "m.task.announced_step.s2", "m.failed.2"]


def test_errors_are_announced_as_their_type_and_headline_never_a_traceback() -> None:
    change = Change(started().run)
    report(change, "announced_flaky", RecordKind.STARTED, 1)
    task_run = change.run.tasks["announced_step"]
    record = TaskRecord(RecordKind.SUCCEEDED, "r", "announced_flaky", 1, at(1).timestamp(), worker="w")
    assert apply_record(change, record, at(1))
    failure = TaskRecord(RecordKind.FAILED, "r", "announced_step", task_run.attempt, at(2).timestamp(), worker="w",
                         error=TRACEBACK, error_type="ValueError")
    assert apply_record(change, failure, at(2))

    task_failed, run_failed = valid(announce.announcements([change], at(2)))

    assert task_failed.data["error"] == {"type": "ValueError", "message": "ValueError: no such order"}
    assert run_failed.data["error"] == {"type": "ValueError",
                                        "message": "task announced_step failed: ValueError: no such order"}
    assert announce.headline("KeyError: 'sku'\n" + TRACEBACK) == "KeyError: 'sku'", "the runner's: headline first"
    assert announce.headline("rule r: 'x' is undefined\n  in template {{ x }}") == "rule r: 'x' is undefined"
    assert announce.headline("\n\n") == ""


def test_a_run_written_before_starts_was_kept_announces_its_end_as_its_first_start() -> None:
    change = Change(started().run)
    change.run.starts = 0  # as read back from a run the engine wrote before it counted starts
    report(change, "announced_flaky", RecordKind.STARTED, 1)
    report(change, "announced_flaky", RecordKind.FAILED, 1, "ValueError")
    (retry,) = change.timers
    change = Change(change.run)
    assert apply_timer(change, retry, at(2))
    report(change, "announced_flaky", RecordKind.FAILED, 3, "ValueError")

    task_failed, run_failed = valid(announce.announcements([change], at(3)))
    assert (run_failed.id, run_failed.data["starts"]) == ("r.failed.1", 1)
    assert run_failed.data["error"]["type"] == "ValueError", "not InvalidParams: it did start"
    assert not change.run.never_started

    again = Change(change.run)
    assert lifecycle.retry(again, at(4), Resources(), Effects())
    assert [e.id for e in valid(announce.announcements([again], at(4)))] == ["r.started.2"], \
        "its retry is its second start: no id clashes with the end it announced"
