"""④ ⑧ Wait steps, the pure parts: their options checked, the DSL and YAML forms, what a waiting step does
when it starts, when an event matches it, when it times out and when a person approves it."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator import approval, task, wait_for_event, workflow
from orchestrator.errors import WorkflowError
from orchestrator.events.envelope import Event
from orchestrator.rules.match import event_view
from orchestrator.workflows.advance import Change, apply_timer
from orchestrator.workflows.lifecycle import cancel, new_run
from orchestrator.workflows.runs import EventRef, Run, RunStatus, TaskState
from orchestrator.workflows.waiting import (
    LOOKBACK,
    Waiter,
    WaitHit,
    approve,
    check_wait,
    correlation_key,
    correlation_refs,
    index_value,
    resolve,
    waiter_of,
)
from orchestrator.workflows.work import Timer
from orchestrator.workflows.yamlflows import load_yaml_workflows

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
EVENT = EventRef(id="e-1", source="/shop", type="order.created")


@task
def reserve(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "sku": "x"}


@task
def ship(order_id: str, payment: Any) -> str:
    return "shipped"


@workflow
def checkout(order_id: str) -> None:
    reserved = reserve(order_id)
    paid = wait_for_event("payment", "payment.received", match={"data.currency": "EUR"},
                          correlate="data.order_id == params.order_id", timeout_s=60, after=[reserved])
    ok = approval("go", timeout_s=300, on_timeout={"default": {"auto": True}}, after=[paid])
    ship.with_options(after=[ok])(order_id, paid)


def started(order_id: str = "o-1") -> Change:
    return new_run("r-1", checkout.spec, "rule", EVENT, {"order_id": order_id}, NOW, {"order_id": order_id})


def reserved(change: Change) -> Change:
    """The run after `reserve` succeeded: the payment step begins waiting."""
    from orchestrator.workflows.advance import apply_record
    from orchestrator.workflows.records import RecordKind, TaskRecord

    run = change.run
    apply_record(change, TaskRecord(RecordKind.SUCCEEDED, run.id, "reserve", 1, NOW.timestamp(),
                                    result={"order_id": run.params["order_id"], "sku": "x"}), NOW)
    return change


def payment(order_id: str, currency: str = "EUR", amount: int = 10) -> tuple[Event, dict[str, Any]]:
    event = Event(type="payment.received", source="/pay", id=f"p-{order_id}-{currency}",
                  data={"order_id": order_id, "currency": currency, "amount": amount})
    return event, event_view(event)


def paid(run: Run) -> WaitHit:
    """The hit of a payment that matches `run`'s waiting payment step."""
    event, view = payment(run.params["order_id"])
    return WaitHit(run.id, "payment", 1, view["data"], {"event": event.id}, event)


# -- options ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("config", "words"), [
    ({"event": "payment.*"}, "exact event type"),
    ({}, "exact event type"),
    ({"event": "p", "match": {"data.a": {"numeric": [">"]}}}, "match:"),
    ({"event": "p", "correlate": "data.a =="}, "correlate:"),
    ({"event": "p", "on_timeout": {"default": 1}}, "needs a timeout_s"),
    ({"event": "p", "timeout_s": 5, "on_timeout": "skip"}, 'on_timeout is "fail"'),
    ({"event": "p", "timeout_s": -1}, "positive"),
    ({"approval": True, "event": "p"}, "drop event"),
    ({"event": "p", "wat": 1}, "unknown wait option 'wat'"),
])
def test_bad_wait_options_are_refused_with_what_is_wrong(config: dict[str, Any], words: str) -> None:
    with pytest.raises(WorkflowError, match="x") as caught:
        check_wait("x", config)
    assert words in str(caught.value)


def test_a_wait_step_takes_no_retries_map_or_task_timeout() -> None:
    @task
    def noop() -> None: ...

    with pytest.raises(WorkflowError, match="no timeout_s"):
        @workflow
        def bad() -> None:
            from orchestrator.workflows.dsl import _builtin_builder

            _builtin_builder("t").add_builtin("wait", "w", {}, after=(), queue=None,
                                              options={"wait": {"event": "e"}, "timeout_s": 5})


def test_the_tasks_a_correlation_reads_are_found() -> None:
    assert correlation_refs("data.id == results.reserve.id && results['check-2'].ok") == {"reserve", "check-2"}
    assert correlation_refs("data.id == params.id") == set()
    assert correlation_refs(None) == set()


def test_the_python_form_records_a_wait_node_with_its_options_and_dependencies() -> None:
    node = checkout.spec.node("payment")
    assert node.kind == "wait" and node.upstream == ("reserve",)
    assert node.wait == {"event": "payment.received", "match": {"data.currency": "EUR"},
                         "correlate": "data.order_id == params.order_id", "timeout_s": 60}
    assert checkout.spec.node("go").wait == {"approval": True, "timeout_s": 300, "on_timeout": {"default": {"auto": True}}}
    assert checkout.spec.node("ship").upstream == ("go", "payment")


def test_a_correlation_on_a_result_makes_that_task_a_dependency() -> None:
    @workflow
    def by_result(order_id: str) -> None:
        reserve(order_id)
        wait_for_event("w", "payment.received", correlate="data.sku == results.reserve.sku")

    assert by_result.spec.node("w").upstream == ("reserve",)


# -- YAML ------------------------------------------------------------------------------------------------------

YAML = """\
workflows:
  - name: checkout_yaml
    params: [order_id]
    tasks:
      - name: reserve
        uses: reserve
        with: {order_id: "{{ params.order_id }}"}
      - name: payment
        wait:
          event: payment.received
          match: {data.currency: EUR}
          correlate: "data.sku == results.reserve.sku"
          timeout_s: 60
          on_timeout: {default: {paid: false}}
      - name: go
        approve: {timeout_s: 300}
        needs: [payment]
      - name: again
        wait: {approval: true}
        needs: [go]
"""


def load(tmp_path: Path, text: str) -> tuple[list[Any], list[Any]]:
    folder = tmp_path / "workflows"
    folder.mkdir(exist_ok=True)
    (folder / "flows.yaml").write_text(textwrap.dedent(text))
    return load_yaml_workflows(folder, {"reserve": reserve, "ship": ship}, {})


def test_the_yaml_form_compiles_to_the_same_nodes(tmp_path: Path) -> None:
    found, issues = load(tmp_path, YAML)
    assert issues == []
    spec = found[0].spec
    assert spec.node("payment").kind == "wait" and spec.node("payment").upstream == ("reserve",)
    assert spec.node("payment").wait["on_timeout"] == {"default": {"paid": False}}
    assert spec.node("go").wait == {"approval": True, "timeout_s": 300}
    assert spec.node("again").wait == {"approval": True}


@pytest.mark.parametrize(("step", "field", "words"), [
    ("wait: {event: 'pay.*'}", "tasks[1].wait.event", "exact event type"),
    ("wait: {event: pay, correlate: 'results.nope.x == data.x'}", "tasks[1].wait.correlate", "unknown task"),
    ("wait: {event: pay, corelate: x}", "tasks[1].wait.corelate", "did you mean 'correlate'"),
    ("wait: {event: pay, on_timeout: later, timeout_s: 3}", "tasks[1].wait.on_timeout", "on_timeout"),
    ("approve: {event: pay}", "tasks[1].approve", "approve: is true"),
    ("wait: {event: pay}\n        retries: 2", "tasks[1]", "no retry"),
])
def test_yaml_problems_name_the_file_line_and_field(tmp_path: Path, step: str, field: str, words: str) -> None:
    text = f"""\
workflows:
  - name: w
    tasks:
      - name: a
        uses: reserve
        with: {{order_id: x}}
      - name: b
        {step}
"""
    found, issues = load(tmp_path, text)
    assert found == [] and issues, issues
    issue = issues[0]
    assert issue.field == f"workflows[0].{field}" and words in issue.message, issue
    assert issue.file.name == "flows.yaml" and issue.line is not None


# -- waiting, matching, resuming ---------------------------------------------------------------------------------


def test_a_ready_wait_step_waits_without_a_job_and_sets_its_timers() -> None:
    change = reserved(started())
    change_run = change.run
    from orchestrator.workflows.advance import settle

    settle(change, NOW)
    task_run = change_run.tasks["payment"]
    assert task_run.state is TaskState.WAITING and task_run.attempt == 1
    assert [d.node for d in change.dispatches] == ["reserve"], "the step itself dispatches no job"
    assert sorted((t.node, t.due) for t in change.timers) == [
        ("payment", NOW + timedelta(seconds=60)), ("payment" + LOOKBACK, NOW)]


def waiting_run(order_id: str = "o-1") -> Run:
    change = started(order_id)
    run = change.run
    from orchestrator.workflows.advance import apply_record
    from orchestrator.workflows.records import RecordKind, TaskRecord

    apply_record(change, TaskRecord(RecordKind.SUCCEEDED, run.id, "reserve", 1, NOW.timestamp(),
                                    result={"order_id": order_id, "sku": "x"}), NOW)
    assert run.tasks["payment"].state is TaskState.WAITING
    return run


def test_a_waiter_matches_its_type_pattern_and_correlation_only() -> None:
    waiter = waiter_of(waiting_run("o-1"), waiting_run("o-1").tasks["payment"])
    assert waiter is not None
    assert waiter.matches(*payment("o-1"))
    assert not waiter.matches(*payment("o-2")), "another order: the correlation says no"
    assert not waiter.matches(*payment("o-1", currency="USD")), "the pattern says no"
    other = Event(type="payment.refunded", source="/pay", id="x", data={"order_id": "o-1", "currency": "EUR"})
    assert not waiter.matches(other, event_view(other))
    broken = Event(type="payment.received", source="/pay", id="y", data={"currency": "EUR"})
    assert not waiter.matches(broken, event_view(broken)), "a correlation that fails to evaluate is no match"
    why = waiter.test(broken, event_view(broken))
    assert isinstance(why, str) and why.startswith("correlate 'data.order_id == params.order_id' could not be")


def test_a_waiter_survives_redis_and_junk_is_refused() -> None:
    run = waiting_run()
    waiter = waiter_of(run, run.tasks["payment"])
    assert waiter is not None and Waiter.from_dict(waiter.to_dict()) == waiter
    assert waiter.results == {}, "the correlation reads no result: the waiter holds none (it stays small)"
    for junk in ([], {"run": 1}, {**waiter.to_dict(), "attempt": "1"}, {**waiter.to_dict(), "params": ["x"]}):
        with pytest.raises((ValueError, KeyError, TypeError)):
            Waiter.from_dict(junk)


def test_a_waiter_holds_only_the_results_its_correlation_reads() -> None:
    @workflow
    def by_sku(order_id: str) -> None:
        reserved = reserve(order_id)
        ship(order_id, reserved)
        wait_for_event("payment", "payment.received", correlate="data.sku == results.reserve.sku")

    run = new_run("r-2", by_sku.spec, "rule", EVENT, {"order_id": "o-1"}, NOW, {"order_id": "o-1"}).run
    run.tasks["reserve"].state, run.tasks["reserve"].result = TaskState.SUCCEEDED, {"order_id": "o-1", "sku": "x"}
    run.tasks["ship"].state, run.tasks["ship"].result = TaskState.SUCCEEDED, "x" * 10_000  # not read: not kept
    waiter = waiter_of(run, run.tasks["payment"])
    assert waiter is not None and waiter.results == {"reserve": {"order_id": "o-1", "sku": "x"}}


@pytest.mark.parametrize(("text", "key"), [
    ("data.order_id == params.order_id", ("data.order_id", "params.order_id")),
    ("params.order.id == data.order.id", ("data.order.id", "params.order.id")),
    ("data.amount > 3 && data.sku == results.reserve.sku", ("data.sku", "results.reserve.sku")),
    ("data.order_id == params.order_id || true", None),   # either side may decide: not indexable
    ("!(data.order_id == params.order_id)", None),
    ("data.order_id == 'o-1' && data.sku == params.sku", None),  # quotes: not split (a string may hold &&)
    ("data.a == data.b", None), (None, None),
])
def test_the_correlations_the_engine_can_index_waiters_by(text: str | None, key: tuple[str, str] | None) -> None:
    assert correlation_key(text) == key


def test_index_values_are_equal_where_cel_equality_is() -> None:
    assert index_value(1) == index_value(1.0) != index_value("1")
    assert index_value(True) != index_value(1) and index_value(None) == ("z",)
    assert index_value([1]) is None and index_value({"a": 1}) is None


def test_the_index_gives_the_waiters_an_event_may_match_and_every_unindexed_one() -> None:
    from orchestrator.engine.waitindex import Candidates

    def waiter(run: str, correlate: str | None, order_id: Any) -> Waiter:
        return Waiter(run, "payment", 1, "payment.received", {}, correlate, {"order_id": order_id}, {}, {}, 0)

    same = "data.order_id == params.order_id"
    waiters = [waiter("a", same, "o-1"), waiter("b", same, "o-2"), waiter("c", same, 1),
               waiter("d", "data.order_id != params.order_id", "o-1"), waiter("e", same, ["o-1"]),
               waiter("f", "data.order_id == params.missing", "o-1"), waiter("g", None, "o-1")]
    index = Candidates([(w, w.index_key()) for w in waiters])

    def runs(data: Any) -> set[str]:
        event = Event(type="payment.received", source="/pay", id="p", data=data)
        return {w.run for w in index.for_event(event_view(event))}

    rest = {"d", "e", "f", "g"}  # not indexable: always candidates
    assert runs({"order_id": "o-1"}) == {"a"} | rest
    assert runs({"order_id": 1.0}) == {"c"} | rest
    assert runs({"order_id": "o-3"}) == runs({"other": 1}) == runs({"order_id": ["o-1"]}) == rest
    for data in ({"order_id": "o-1"}, {"order_id": 1.0}, {"order_id": "o-3"}, {"order_id": ["o-1"]}):
        event = Event(type="payment.received", source="/pay", id="p", data=data)
        matching = {w.run for w in waiters if w.matches(event, event_view(event))}
        assert matching <= runs(data), "the index only narrows: every match is a candidate"


def test_a_hit_resumes_the_step_with_the_event_data_and_the_next_step_waits() -> None:
    run = waiting_run()
    change = Change(run)
    event, view = payment("o-1")
    hit = WaitHit(run.id, "payment", 1, view["data"], {"event": event.id}, event)
    assert resolve(change, hit, NOW)
    from orchestrator.workflows.advance import settle

    settle(change, NOW)
    assert run.tasks["payment"].state is TaskState.SUCCEEDED
    assert run.tasks["payment"].result == {"order_id": "o-1", "currency": "EUR", "amount": 10}
    assert run.tasks["payment"].via == {"event": event.id}
    assert run.tasks["go"].state is TaskState.WAITING
    assert not resolve(Change(run), hit, NOW), "a second event finds the step resumed already"


def test_a_hit_resumes_only_an_event_wait_of_its_type_that_the_event_matches() -> None:
    """A hit comes from a waiter read back from Redis: the run's own wait decides (finding: any WAITING
    step was resumed, an approval step included)."""
    run = waiting_run()
    other = Event(type="payment.refunded", source="/pay", id="x-1", data={"order_id": "o-1", "currency": "EUR"})
    wrong_order, _ = payment("o-2")
    usd, _ = payment("o-1", currency="USD")
    for hit in (WaitHit(run.id, "payment", 1, {}, {}, other), WaitHit(run.id, "payment", 1, {}, {}, wrong_order),
                WaitHit(run.id, "payment", 1, {}, {}, usd), WaitHit(run.id, "payment", 1, {}, {})):
        assert not resolve(Change(run), hit, NOW), hit.event
        assert run.tasks["payment"].state is TaskState.WAITING
    resolve(Change(run), paid(run), NOW)
    from orchestrator.workflows.advance import settle

    settle(Change(run), NOW)
    assert run.tasks["go"].state is TaskState.WAITING
    event, _ = payment("o-1")
    assert not resolve(Change(run), WaitHit(run.id, "go", 1, {}, {"event": event.id}, event), NOW), \
        "an approval step is resumed by an approval only"
    assert run.tasks["go"].state is TaskState.WAITING


def test_a_hit_for_an_older_attempt_changes_nothing() -> None:
    run = waiting_run()
    assert not resolve(Change(run), WaitHit(run.id, "payment", 0, {}, {}, payment("o-1")[0]), NOW)
    assert run.tasks["payment"].state is TaskState.WAITING


def test_a_timeout_fails_the_step_and_the_run() -> None:
    run = waiting_run()
    change = Change(run)
    assert apply_timer(change, Timer(run.id, "payment", 1, NOW), NOW + timedelta(seconds=60))
    assert run.tasks["payment"].state is TaskState.FAILED
    assert run.tasks["payment"].error == "no matching payment.received event within 60s"
    assert run.status is RunStatus.FAILED and run.tasks["ship"].state is TaskState.SKIPPED


def test_a_timeout_with_a_default_succeeds_with_it() -> None:
    run = waiting_run()
    resolve(Change(run), paid(run), NOW)
    change = Change(run)
    from orchestrator.workflows.advance import settle

    settle(change, NOW)
    assert apply_timer(change, Timer(run.id, "go", 1, NOW), NOW + timedelta(seconds=300))
    assert run.tasks["go"].state is TaskState.SUCCEEDED and run.tasks["go"].result == {"auto": True}
    assert [d.node for d in change.dispatches] == ["ship"]


def test_a_stale_timeout_changes_nothing() -> None:
    run = waiting_run()
    resolve(Change(run), paid(run), NOW)
    assert not apply_timer(Change(run), Timer(run.id, "payment", 1, NOW), NOW)


def test_an_approval_resumes_only_an_approval_step_that_waits() -> None:
    run = waiting_run()
    change = Change(run)
    assert not approve(change, "payment", {}, "alice", NOW), "not an approval step"
    assert not approve(change, "go", {}, "alice", NOW), "not waiting yet"
    resolve(change, paid(run), NOW)
    from orchestrator.workflows.advance import settle

    settle(change, NOW)
    assert approve(change, "go", {"note": "ok"}, "alice", NOW)
    assert run.tasks["go"].result == {"note": "ok"} and run.tasks["go"].via["approved_by"] == "alice"
    assert not approve(change, "go", {}, "bob", NOW), "approved once"


def test_cancelling_the_run_cancels_the_waiting_step() -> None:
    run = waiting_run()
    change = Change(run)
    assert cancel(change, NOW, "ops")
    assert run.tasks["payment"].state is TaskState.CANCELLED and "payment" in change.tasks
