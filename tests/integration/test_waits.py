"""④ ⑧ Wait steps against a real Redis with the in-process engine and worker: an event resumes the run it
correlates with, a timeout fails it or gives its default, an early event is found by the look-back (and
one from before the window is not), and a person's approval goes through the steering path."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from orchestrator.cli.wiring import load_project
from orchestrator.settings import Settings
from orchestrator.state.steer import SteeringError, wait_for
from orchestrator.state.steer import request as steer
from orchestrator.workflows.records import ControlRecord
from orchestrator.workflows.runs import Run, RunStatus, TaskState

from ..inproc import Stack
from ..projects import make_project

RULES = """\
rules:
  - name: checkout
    type: order.created
    workflow: checkout
    params: {order_id: "{{ event.data.order_id }}"}
  - name: typo
    type: order.typo
    workflow: typo
    params: {order_id: "{{ event.data.order_id }}"}
  - name: bounded
    type: order.bounded
    workflow: bounded
    params: {order_id: "{{ event.data.order_id }}"}
  - name: approvals
    type: deploy.requested
    workflow: deploy
    params: {service: "{{ event.data.service }}"}
"""

WORKFLOWS = {"shop": """\
    from orchestrator import approval, task, wait_for_event, workflow

    @task
    def reserve(order_id: str) -> dict:
        return {"order_id": order_id, "sku": "sku-" + order_id}

    @task
    def ship(order_id: str, payment: dict) -> str:
        return f"shipped {order_id}, paid {payment['amount']}"

    @task
    def deploy_it(service: str, approved: dict) -> str:
        return f"deployed {service} ({approved.get('note', '')})"

    @workflow
    def checkout(order_id: str):
        reserved = reserve(order_id)
        paid = wait_for_event("payment", "payment.received", match={"data.currency": "EUR"},
                              correlate="data.order_id == params.order_id && data.sku == results.reserve.sku",
                              timeout_s=60, after=[reserved])
        ship(order_id, paid)

    @workflow
    def typo(order_id: str):
        paid = wait_for_event("payment", "payment.received", correlate="data.order_id == params.orderid")
        ship(order_id, paid)

    @workflow(timeout_s=30)
    def bounded(order_id: str):
        paid = wait_for_event("payment", "payment.received", correlate="data.order_id == params.order_id")
        ship(order_id, paid)

    @workflow
    def deploy(service: str):
        ok = approval("go", timeout_s=300, on_timeout={"default": {"note": "approved by default"}})
        deploy_it(service, ok)
"""}


class Clock:
    """The engine's clock, moved by the test (the worker keeps real time)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_stack(r: redis.Redis, settings: Settings, tmp_path: Path, clock: Clock, **overrides: object) -> Stack:
    root = make_project(tmp_path / "project", rules=RULES, workflows=WORKFLOWS)
    settings = Settings(**{**settings.model_dump(), "project": root, **overrides})
    return Stack(r, settings, load_project(root), clock=clock)


@pytest.fixture
def stack(r: redis.Redis, settings: Settings, tmp_path: Path, clock: Clock) -> Stack:
    return make_stack(r, settings, tmp_path, clock)


def order(stack: Stack, order_id: str) -> Run:
    event_id = stack.emit("order.created", {"order_id": order_id}, source="/shop", id=f"order-{order_id}")
    stack.drain()
    return stack.run("checkout", "/shop", event_id)


def pay(stack: Stack, order_id: str, *, currency: str = "EUR", amount: int = 10, sku: str | None = None,
        n: int = 1) -> str:
    return stack.emit("payment.received", {"order_id": order_id, "currency": currency, "amount": amount,
                                           "sku": sku or f"sku-{order_id}"}, source="/pay", id=f"pay-{order_id}-{n}")


def again(stack: Stack, run: Run) -> Run:
    fresh = stack.engine.store.get(run.id)
    assert fresh is not None
    return fresh


def test_a_matching_event_resumes_the_run_with_its_data(stack: Stack, r: redis.Redis) -> None:
    run = order(stack, "o-1")
    assert run.status is RunStatus.RUNNING and run.tasks["payment"].state is TaskState.WAITING
    assert run.tasks["ship"].state is TaskState.PENDING
    assert r.hlen("orch:waits:payment.received") == 1

    event_id = pay(stack, "o-1", amount=25)
    stack.drain()

    run = again(stack, run)
    assert run.status is RunStatus.SUCCEEDED
    payment = run.tasks["payment"]
    assert payment.result == {"order_id": "o-1", "currency": "EUR", "amount": 25, "sku": "sku-o-1"}
    assert payment.via is not None and payment.via["event"] == event_id and payment.via["type"] == "payment.received"
    assert run.tasks["ship"].result == "shipped o-1, paid 25"
    assert r.hlen("orch:waits:payment.received") == 0, "the waiter goes with the wait"
    assert r.xpending("orch:events", "engine")["pending"] == 0


def test_the_correlation_picks_the_right_run_and_other_events_are_ignored(stack: Stack, r: redis.Redis) -> None:
    runs = {o: order(stack, o) for o in ("o-1", "o-2", "o-3")}
    pay(stack, "o-1", currency="USD")  # the pattern says no
    pay(stack, "o-1", sku="another-sku", n=2)  # the correlation on the result says no
    stack.emit("payment.refunded", {"order_id": "o-1", "currency": "EUR"}, source="/pay")  # another type
    pay(stack, "o-9")  # nobody's order
    stack.drain()
    assert all(again(stack, run).tasks["payment"].state is TaskState.WAITING for run in runs.values())

    pay(stack, "o-2", n=3)
    stack.drain()

    states = {o: again(stack, run).status for o, run in runs.items()}
    assert states == {"o-1": RunStatus.RUNNING, "o-2": RunStatus.SUCCEEDED, "o-3": RunStatus.RUNNING}
    assert r.hlen("orch:waits:payment.received") == 2


def test_one_event_resumes_every_run_that_waits_for_it(stack: Stack) -> None:
    first = order(stack, "o-1")
    second_id = stack.emit("order.created", {"order_id": "o-1"}, source="/shop", id="order-o-1-again")
    stack.drain()
    second = stack.run("checkout", "/shop", second_id)

    pay(stack, "o-1")
    stack.drain()

    assert again(stack, first).status is RunStatus.SUCCEEDED and again(stack, second).status is RunStatus.SUCCEEDED


def test_a_timeout_fails_the_step_and_the_run(stack: Stack, clock: Clock, r: redis.Redis) -> None:
    run = order(stack, "o-1")
    clock.offset = timedelta(seconds=61)
    stack.drain()

    run = again(stack, run)
    assert run.status is RunStatus.FAILED
    assert run.tasks["payment"].error == "no matching payment.received event within 60s"
    assert run.tasks["ship"].state is TaskState.SKIPPED
    assert r.hlen("orch:waits:payment.received") == 0

    pay(stack, "o-1")  # too late: nothing waits for it any more
    stack.drain()
    assert again(stack, run).status is RunStatus.FAILED


def test_a_timeout_with_a_default_goes_on_with_it(stack: Stack, clock: Clock) -> None:
    event_id = stack.emit("deploy.requested", {"service": "api"}, source="/ci")
    stack.drain()
    assert stack.run("approvals", "/ci", event_id).tasks["go"].state is TaskState.WAITING

    clock.offset = timedelta(seconds=301)
    stack.drain()

    run = stack.run("approvals", "/ci", event_id)
    assert run.status is RunStatus.SUCCEEDED
    assert run.tasks["go"].result == {"note": "approved by default"} and run.tasks["go"].via == {"timed_out": True}
    assert run.tasks["deploy_it"].result == "deployed api (approved by default)"


def test_an_event_that_came_while_the_first_task_ran_is_found(stack: Stack) -> None:
    event_id = stack.emit("order.created", {"order_id": "o-1"}, source="/shop", id="order-o-1")
    stack.engine.step(block=False)  # the run starts; reserve is queued, not run yet
    run = stack.run("checkout", "/shop", event_id)
    assert run.tasks["reserve"].state is TaskState.QUEUED

    pay(stack, "o-1", amount=7)  # the payment comes before the run waits for it...
    stack.engine.step(block=False)  # ...and is acknowledged: no step waited for it then
    assert stack.r.xpending("orch:events", "engine")["pending"] == 0
    assert again(stack, run).tasks["payment"].state is TaskState.PENDING

    stack.drain()  # reserve runs, the step starts waiting, its look-back finds the payment

    run = again(stack, run)
    assert run.status is RunStatus.SUCCEEDED and run.tasks["ship"].result == "shipped o-1, paid 7"


def test_an_event_older_than_the_look_back_window_is_not_found(r: redis.Redis, settings: Settings, tmp_path: Path,
                                                               clock: Clock) -> None:
    stack = make_stack(r, settings, tmp_path, clock, wait_lookback_s=600)
    event_id = stack.emit("order.created", {"order_id": "o-1"}, source="/shop", id="order-o-1")
    stack.engine.step(block=False)
    pay(stack, "o-1")
    stack.engine.step(block=False)

    clock.offset = timedelta(seconds=601)  # the step starts waiting more than the window after the payment
    stack.drain()

    run = stack.run("checkout", "/shop", event_id)
    assert run.tasks["payment"].state is TaskState.WAITING, "the payment is older than the look-back window"
    pay(stack, "o-1", amount=3, n=2)
    stack.drain()
    assert again(stack, run).status is RunStatus.SUCCEEDED


def _noise(stack: Stack, n: int) -> None:
    pipe = stack.r.pipeline(transaction=False)
    for i in range(n):  # events of another type nobody waits for, straight into the stream
        pipe.xadd("orch:events", {"e": json.dumps({"specversion": "1.0", "id": f"n-{i}", "source": "/noise",
                                                   "type": "noise.tick", "data": {"i": i}})})
    pipe.execute()


def _started_then_paid(stack: Stack, noise_after: int = 0, payments: tuple[int, ...] = (7,)) -> Run:
    """A run whose reserve is queued, then its payment(s) (early), then `noise_after` unrelated events."""
    event_id = stack.emit("order.created", {"order_id": "o-1"}, source="/shop", id="order-o-1")
    stack.engine.step(block=False)
    run = stack.run("checkout", "/shop", event_id)
    assert run.tasks["reserve"].state is TaskState.QUEUED
    for n, amount in enumerate(payments, 1):
        pay(stack, "o-1", amount=amount, n=n)
    _noise(stack, noise_after)
    stack.drain()
    return again(stack, run)


def test_an_early_event_on_a_busy_stream_is_found_newest_first(r: redis.Redis, settings: Settings, tmp_path: Path,
                                                                clock: Clock) -> None:
    """1,000 unrelated events in the window before the run, more than the budget: the look-back reads
    from the newest entry back, so the payment that came just before the step waited is read first."""
    stack = make_stack(r, settings, tmp_path, clock, wait_lookback_max_entries=600)
    _noise(stack, 1000)
    stack.drain()
    run = _started_then_paid(stack)
    assert run.status is RunStatus.SUCCEEDED and run.tasks["ship"].result == "shipped o-1, paid 7"


def test_the_look_back_reads_at_most_its_budget_of_entries(r: redis.Redis, settings: Settings, tmp_path: Path,
                                                           clock: Clock) -> None:
    """The payment, then 700 unrelated events before the step waits: a budget of 600 does not reach it."""
    stack = make_stack(r, settings, tmp_path, clock, wait_lookback_max_entries=600)
    run = _started_then_paid(stack, noise_after=700)
    assert run.tasks["payment"].state is TaskState.WAITING, "the payment lies beyond the look-back's budget"

    r.flushdb()
    stack = make_stack(r, settings, tmp_path / "again", clock, wait_lookback_max_entries=800)
    run = _started_then_paid(stack, noise_after=700)
    assert run.status is RunStatus.SUCCEEDED, "within a budget of 800 it is found"


def test_of_several_early_events_the_earliest_resumes_the_step(stack: Stack) -> None:
    """As if the step had been waiting: the first payment is the one it takes, though read last."""
    run = _started_then_paid(stack, noise_after=3, payments=(7, 8, 9))
    assert run.status is RunStatus.SUCCEEDED and run.tasks["payment"].result["amount"] == 7
    assert run.tasks["payment"].via is not None and run.tasks["payment"].via["event"] == "pay-o-1-1"


def test_an_approval_resumes_the_run_and_records_who_approved(stack: Stack) -> None:
    event_id = stack.emit("deploy.requested", {"service": "api"}, source="/ci")
    stack.drain()
    run = stack.run("approvals", "/ci", event_id)
    keys, store = stack.engine.keys, stack.engine.store

    for node, status in (("deploy_it", 422), ("nope", 404)):
        with pytest.raises(SteeringError) as refused:
            steer(stack.r, keys, store, "approve", run.id, node=node, by="alice")
        assert refused.value.status == status
    steered = steer(stack.r, keys, store, "approve", run.id, node="go", data={"note": "lgtm"}, by="alice")
    assert steered.to_dict() == {"action": "approve", "run": run.id, "task": "go", "request": steered.request}
    stack.drain()

    run = again(stack, run)
    assert run.status is RunStatus.SUCCEEDED
    assert run.tasks["go"].result == {"note": "lgtm"} and run.tasks["go"].via is not None
    assert run.tasks["go"].via["approved_by"] == "alice" and run.tasks["go"].via["request"] == steered.request
    assert run.tasks["deploy_it"].result == "deployed api (lgtm)"
    assert [(s["action"], s["by"], s["task"]) for s in run.steering] == [("approve", "alice", "go")]
    with pytest.raises(SteeringError, match="not waiting") as twice:
        steer(stack.r, keys, store, "approve", run.id, node="go", by="bob")
    assert twice.value.status == 409


def test_of_two_approvals_sent_together_the_second_learns_it_was_not_applied(stack: Stack) -> None:
    """Both pass the check (the step still waits when each is sent); the engine applies the first only,
    and the second sender is told so, with who approved (before: both were reported applied)."""
    event_id = stack.emit("deploy.requested", {"service": "api"}, source="/ci")
    stack.drain()
    run = stack.run("approvals", "/ci", event_id)
    keys, store = stack.engine.keys, stack.engine.store
    first = steer(stack.r, keys, store, "approve", run.id, node="go", data={"note": "first"}, by="alice")
    second = steer(stack.r, keys, store, "approve", run.id, node="go", data={"note": "second"}, by="alice")
    assert first.request != second.request
    stack.drain()

    done = wait_for(store, first, timeout_s=5)
    assert done is not None and done.tasks["go"].result == {"note": "first"}
    with pytest.raises(SteeringError, match="not applied: task go of run .* was already approved by alice") as late:
        wait_for(store, second, timeout_s=5)
    assert late.value.status == 409
    assert [s["action"] for s in again(stack, run).steering] == ["approve"], "the steering log has the applied one"


def test_an_approval_that_comes_after_the_timeout_says_so(stack: Stack, clock: Clock) -> None:
    event_id = stack.emit("deploy.requested", {"service": "api"}, source="/ci")
    stack.drain()
    run = stack.run("approvals", "/ci", event_id)
    late = steer(stack.r, stack.engine.keys, stack.engine.store, "approve", run.id, node="go", by="bob")
    stack.r.xdel("orch:results", stack.r.xrevrange("orch:results", count=1)[0][0])  # held up on its way...
    clock.offset = timedelta(seconds=301)
    stack.drain()  # ...while the step times out
    record = ControlRecord(action="approve", run=run.id, at_s=0, by="bob", node="go", request=late.request)
    stack.r.xadd("orch:results", record.to_fields())
    stack.drain()
    assert again(stack, run).tasks["go"].via == {"timed_out": True}
    with pytest.raises(SteeringError, match="task go of run .* timed out before the approval reached the engine"):
        wait_for(stack.engine.store, late, timeout_s=5)


def test_a_correlation_that_cannot_be_evaluated_is_shown_on_the_step_and_warned_once(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """`params.orderid` does not exist (a typo for order_id): every event fails the correlation. Before,
    that was a debug line; now the step says so and the engine warns, once per step and message."""
    event_id = stack.emit("order.typo", {"order_id": "o-1"}, source="/shop")
    stack.drain()
    run = stack.run("typo", "/shop", event_id)
    with caplog.at_level(logging.WARNING, logger="orchestrator.engine.waits"):
        pay(stack, "o-1")
        pay(stack, "o-1", n=2)
        stack.drain()
    task = again(stack, run).tasks["payment"]
    assert task.state is TaskState.WAITING
    assert task.error is not None and "correlate 'data.order_id == params.orderid' could not be evaluated" in task.error
    assert "(event pay-o-1-1)" in task.error, "the first event that failed it"
    warned = [r for r in caplog.records if "cannot match event" in r.getMessage()]
    assert len(warned) == 1 and "orderid" in warned[0].getMessage()


def test_cancelling_a_waiting_run_removes_its_waiter(stack: Stack, r: redis.Redis) -> None:
    run = order(stack, "o-1")
    steer(stack.r, stack.engine.keys, stack.engine.store, "cancel", run.id, by="ops")
    stack.drain()
    assert again(stack, run).tasks["payment"].state is TaskState.CANCELLED
    assert r.hlen("orch:waits:payment.received") == 0


WAITS = "orch:waits:payment.received"


def test_the_runs_timeout_removes_the_waiter_and_a_later_event_changes_nothing(stack: Stack, clock: Clock,
                                                                                r: redis.Redis) -> None:
    event_id = stack.emit("order.bounded", {"order_id": "o-1"}, source="/shop")
    stack.drain()
    assert r.hlen(WAITS) == 1
    clock.offset = timedelta(seconds=31)
    stack.drain()
    run = stack.run("bounded", "/shop", event_id)
    assert run.status is RunStatus.FAILED and run.tasks["payment"].state is TaskState.CANCELLED
    assert r.hlen(WAITS) == 0, "the run's timeout takes its waiter"

    pay(stack, "o-1")
    stack.drain()
    run = again(stack, run)
    assert run.status is RunStatus.FAILED and run.tasks["payment"].result is None


def test_a_retried_wait_waits_again_with_a_new_attempt_and_only_that_one_resumes(stack: Stack, clock: Clock,
                                                                                  r: redis.Redis) -> None:
    run = order(stack, "o-1")
    clock.offset = timedelta(seconds=61)
    stack.drain()
    assert again(stack, run).status is RunStatus.FAILED and r.hlen(WAITS) == 0

    steer(stack.r, stack.engine.keys, stack.engine.store, "retry", run.id, by="ops")
    stack.drain()
    run = again(stack, run)
    assert run.tasks["payment"].state is TaskState.WAITING and run.tasks["payment"].attempt == 2
    assert [m.decode().split("\x1f") for m in r.hkeys(WAITS)] == [[run.id, "payment", "2"]]

    pay(stack, "o-1")
    stack.drain()
    run = again(stack, run)
    assert run.status is RunStatus.SUCCEEDED and run.tasks["payment"].attempt == 2 and r.hlen(WAITS) == 0


def test_a_rerun_waits_in_the_new_run_only(stack: Stack, clock: Clock, r: redis.Redis) -> None:
    old = order(stack, "o-1")
    clock.offset = timedelta(seconds=61)
    stack.drain()
    assert again(stack, old).status is RunStatus.FAILED

    steered = steer(stack.r, stack.engine.keys, stack.engine.store, "rerun", old.id, from_node="payment", by="ops")
    stack.drain()
    assert steered.new_run is not None
    new = stack.engine.store.get(steered.new_run)
    assert new is not None and new.tasks["payment"].state is TaskState.WAITING
    assert [m.decode().split("\x1f")[0] for m in r.hkeys(WAITS)] == [new.id], "no waiter of the old run"

    pay(stack, "o-1")
    stack.drain()
    assert again(stack, new).status is RunStatus.SUCCEEDED and r.hlen(WAITS) == 0
    old = again(stack, old)
    assert old.status is RunStatus.FAILED and old.tasks["payment"].state is TaskState.FAILED, "no stale resume"


def test_an_event_read_by_an_engine_that_crashed_still_resumes_the_step_once(stack: Stack, r: redis.Redis) -> None:
    from executors.dispatch import RQDispatcher
    from orchestrator.engine import Engine

    run = order(stack, "o-1")
    pay(stack, "o-1", amount=4)
    crashed = Engine(r, stack.settings, stack.project, RQDispatcher(r, stack.settings), consumer="crashed")
    entries = crashed.consumer.read(block=False)  # read, then "crash" before committing: nothing resumed
    assert len(entries) == 1 and again(stack, run).tasks["payment"].state is TaskState.WAITING

    stack.engine._settings = Settings(**{**stack.settings.model_dump(), "engine_claim_idle_s": 0.0001})
    stack.engine.maintain(force=True)  # reclaims the dead consumer's entry: the step resumes
    stack.engine.process(entries, retried=True)  # the same entry once more, as after a second crash
    stack.drain()

    run = again(stack, run)
    assert run.status is RunStatus.SUCCEEDED and run.tasks["ship"].attempt == 1
    assert r.hget("orch:metrics:orch_tasks_finished_total", "checkout\x1fship\x1fsucceeded") == b"1"
    assert r.xpending("orch:events", "engine")["pending"] == 0


def test_a_step_can_wait_for_another_runs_end_which_no_rule_listens_to(r: redis.Redis, settings: Settings,
                                                                        tmp_path: Path, clock: Clock) -> None:
    flows = {"chain": """\
        from orchestrator import task, wait_for_event, workflow

        @task
        def work(n: int) -> int:
            return n

        @workflow
        def first(n: int):
            work(n)

        @workflow
        def second(n: int):
            done = wait_for_event("first_done", "orch.run.succeeded", correlate="data.workflow == 'first'")
            work.with_options(after=[done])(n)
    """}
    rules = """\
    rules:
      - {name: first, type: go.first, workflow: first, params: {n: "{{ data.n }}"}}
      - {name: second, type: go.second, workflow: second, params: {n: "{{ data.n }}"}}
    """
    root = make_project(tmp_path / "chain", rules=rules, workflows=flows)
    stack = Stack(r, Settings(**{**settings.model_dump(), "project": root}), load_project(root), clock=clock)
    second = stack.emit("go.second", {"n": 2}, source="/t")
    stack.drain()
    assert stack.run("second", "/t", second).tasks["first_done"].state is TaskState.WAITING

    stack.emit("go.first", {"n": 1}, source="/t")
    stack.drain()

    run = stack.run("second", "/t", second)
    assert run.status is RunStatus.SUCCEEDED and run.tasks["first_done"].result["workflow"] == "first"
