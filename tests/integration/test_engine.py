"""③ + ⑧ The engine against a real Redis and a real RQ worker (in-process, burst mode)."""

from __future__ import annotations

import os
import pickle
import threading
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from rq.job import Job, JobStatus

from executors.dispatch import RQDispatcher, make_queue
from executors.worker import run_worker
from orchestrator.cli.wiring import load_project
from orchestrator.engine import Engine
from orchestrator.engine.maintenance import Sweep
from orchestrator.metrics import EVENTS_DEAD_LETTERED
from orchestrator.project import Project
from orchestrator.settings import Settings
from orchestrator.workflows.advance import DISPATCH_CHUNK
from orchestrator.workflows.records import RecordKind, TaskRecord
from orchestrator.workflows.runs import RunStatus, TaskState, derive_run_id

from ..helpers import EXAMPLES
from ..inproc import Stack
from ..projects import make_project


@pytest.fixture
def stack(r: redis.Redis, settings: Settings) -> Stack:
    return Stack(r, settings, load_project(EXAMPLES))


def test_an_event_runs_its_workflow_in_dependency_order(stack: Stack) -> None:
    event_id = stack.emit("order.created", {"order_id": "A-1", "amount": 42.5, "items": ["book", "pen"]},
                          source="/shop")
    stack.drain()

    run = stack.run("process-new-orders", "/shop", event_id)
    assert run.status is RunStatus.SUCCEEDED
    tasks = run.tasks
    assert all(t.state is TaskState.SUCCEEDED for t in tasks.values())
    confirmation = tasks["send_confirmation"]
    for upstream in ("charge_payment", "reserve_stock"):
        assert tasks[upstream].finished_at <= confirmation.started_at  # type: ignore[operator]
    assert confirmation.result == "order A-1: charged 42.50, reserved 2 item(s)"
    assert tasks["charge_payment"].result == {"order_id": "A-1", "payment_id": "pay-A-1", "charged": 42.5}
    assert run.params == {"order_id": "A-1", "amount": 42.5, "items": ["book", "pen"]}


def test_events_no_rule_matches_are_acknowledged_without_a_run(stack: Stack, r: redis.Redis) -> None:
    stack.emit("user.signup", {"email": "a@b", "plan": "free"}, source="/accounts")  # rule wants pro or team
    stack.emit("nobody.listens", {}, source="/x")
    stack.drain()
    assert r.zcard("orch:runs") == 0
    assert r.xpending("orch:events", "engine")["pending"] == 0
    evaluations = r.hgetall("orch:metrics:orch_rule_evaluations_total")
    assert evaluations == {b"welcome-paid-users\x1fnot_matched": b"1"}


def test_a_redelivered_event_never_makes_a_second_run(stack: Stack, r: redis.Redis) -> None:
    event_id = stack.emit("order.created", {"order_id": "A-2", "amount": 5}, source="/shop")
    crashed = Engine(r, stack.settings, stack.project, RQDispatcher(r, stack.settings), consumer="crashed")
    entries = crashed.consumer.read(block=False)  # read, then "crash" before committing
    assert len(entries) == 1

    stack.engine._settings = Settings(**{**stack.settings.model_dump(), "engine_claim_idle_s": 0.0001})
    stack.engine.maintain(force=True)  # reclaims the dead consumer's entry and starts the run
    stack.engine.process(entries, retried=True)  # the same entry once more, as after a second crash
    stack.drain()

    assert r.zcard("orch:runs") == 1
    assert stack.run("process-new-orders", "/shop", event_id).status is RunStatus.SUCCEEDED
    assert r.llen("rq:queue:orch.default") == 0
    finished = r.hgetall("orch:metrics:orch_tasks_finished_total")
    assert finished[b"process_order\x1fcharge_payment\x1fsucceeded"] == b"1", "each task ran exactly once"


FAILING = {
    "flaky": """
        from orchestrator import task, workflow

        @task
        def extract(n: int) -> int:
            return n

        @task
        def divide(n: int) -> float:
            return 10 / n

        @task
        def publish(value: float) -> str:
            return f"published {value}"

        @task
        def audit(n: int) -> str:
            return f"audited {n}"

        @workflow
        def compute(n: int):
            value = divide(extract(n))
            publish(value)
            audit(n)
    """
}
FAILING_RULES = """
    rules:
      - name: compute
        type: compute.requested
        workflow: compute
        params:
          n: "{{ event.data.n }}"
"""


def test_a_failing_task_fails_the_run_and_skips_its_dependents(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path, rules=FAILING_RULES, workflows=FAILING))
    stack = Stack(r, Settings(redis_url=redis_url, project=tmp_path), project)
    event_id = stack.emit("compute.requested", {"n": 0}, source="/calc")
    stack.drain()

    run = stack.run("compute", "/calc", event_id)
    assert run.status is RunStatus.FAILED
    assert run.error == "task divide failed: ZeroDivisionError: division by zero"
    states = {name: t.state for name, t in run.tasks.items()}
    assert states == {"extract": TaskState.SUCCEEDED, "divide": TaskState.FAILED, "audit": TaskState.SUCCEEDED,
                      "publish": TaskState.SKIPPED}
    assert "Traceback" in (run.tasks["divide"].error or "")
    assert run.tasks["publish"].error == "upstream task divide failed"
    failed = make_queue(r, "orch.default").failed_job_registry
    assert failed.get_job_ids() == [f"{run.id}-divide-1"], "RQ records the failure too"


def test_parameters_that_cannot_render_make_a_failed_run(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    rules = FAILING_RULES.replace("event.data.n", "event.data.missing")
    project = load_project(make_project(tmp_path, rules=rules, workflows=FAILING))
    stack = Stack(r, Settings(redis_url=redis_url, project=tmp_path), project)
    event_id = stack.emit("compute.requested", {"n": 1}, source="/calc")
    stack.drain()

    run = stack.run("compute", "/calc", event_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.startswith("rule compute: params.n:") and "missing" in run.error
    assert all(t.state is TaskState.SKIPPED for t in run.tasks.values())
    assert r.hgetall("orch:metrics:orch_rule_evaluations_total") == {b"compute\x1ferror": b"1"}


def test_an_undecodable_entry_is_dead_lettered_at_once(stack: Stack, r: redis.Redis) -> None:
    r.xadd("orch:events", {"e": b"{not json"})
    stack.drain()
    (dead,) = r.xrange("orch:events:dead")
    assert dead[1][b"reason"].startswith(b"undecodable entry")
    assert dead[1][b"payload_e"] == b"{not json"
    assert r.hget(f"orch:metrics:{EVENTS_DEAD_LETTERED.name}", "events") == b"1"
    assert r.xpending("orch:events", "engine")["pending"] == 0


def test_an_entry_that_keeps_failing_is_dead_lettered_with_its_error(stack: Stack, r: redis.Redis) -> None:
    r.hset("orch:run:broken", "meta", b"{}")  # a run the engine cannot read
    r.xadd("orch:results", {"r": b'{"kind":"started","run":"broken","node":"x","attempt":1,"at_s":0}'})
    stack.engine._settings = Settings(**{**stack.settings.model_dump(), "engine_claim_idle_s": 0.0001,
                                         "engine_max_deliveries": 3})
    stack.engine.step(block=False)
    for _ in range(3):
        stack.engine.maintain(force=True)

    (dead,) = r.xrange("orch:events:dead")
    assert dead[1][b"stream"] == b"orch:results"
    assert dead[1][b"reason"].startswith(b"KeyError")
    assert r.xpending("orch:results", "engine")["pending"] == 0
    assert r.hlen("orch:engine:errors") == 0


def test_a_record_for_an_unknown_run_is_acknowledged_and_ignored(stack: Stack, r: redis.Redis) -> None:
    r.xadd("orch:results", {"r": b'{"kind":"started","run":"gone","node":"x","attempt":1,"at_s":0}'})
    stack.drain()
    assert r.xpending("orch:results", "engine")["pending"] == 0


def test_workers_refuse_jobs_that_call_anything_but_the_entry_point(stack: Stack, r: redis.Redis,
                                                                   tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    job = make_queue(r, "orch.default").enqueue("os.system", f"touch {marker}")
    stack.drain()
    job.refresh()
    assert job.get_status() == JobStatus.FAILED
    assert "orch workers only run executors.runner.run_task" in (job.latest_result().exc_string or "")
    assert not marker.exists()


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_workers_never_unpickle_job_data(stack: Stack, r: redis.Redis, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = zlib.compress(pickle.dumps(("executors.runner.run_task", None, [_Evil(marker)], {})))
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    r.hset("rq:job:evil", mapping={"data": data, "status": "queued", "origin": "orch.default", "created_at": now,
                                   "enqueued_at": now, "description": "evil"})
    r.sadd("rq:queues", "rq:queue:orch.default")
    r.rpush("rq:queue:orch.default", "evil")
    stack.drain()
    assert Job.fetch("evil", connection=r).get_status() == JobStatus.FAILED
    assert not marker.exists()


def test_a_task_the_worker_does_not_know_fails_the_run(stack: Stack, r: redis.Redis, tmp_path: Path) -> None:
    event_id = stack.emit("user.signup", {"email": "a@b", "plan": "pro"}, source="/accounts")
    stack.engine.step(block=False)
    stranger = make_project(tmp_path, workflows={"other": "from orchestrator import task\n\n@task\ndef other(): pass\n"})
    no_grace = stack.settings.model_copy(update={"worker_deploy_grace_s": 0})  # else retried while it may be deployed
    run_worker(r, no_grace, load_project(stranger), ["default"], burst=True)
    stack.drain()

    run = stack.run("welcome-paid-users", "/accounts", event_id)
    assert run.status is RunStatus.FAILED
    assert "UnknownWorkflowVersion: workflow 'welcome_user' version" in (run.error or "")
    assert "deploy the same project to workers and engine; nothing was run" in (run.error or "")


def _one_task_retried(root: Path, max_retries: int) -> Project:
    """A project whose `t.x` events run one task, `only`, retried `max_retries` times at once."""
    return load_project(make_project(root, rules="""\
        rules:
          - {name: r, type: t.x, workflow: one}
        """, workflows={"one": f"""\
        from orchestrator import task, workflow

        @task(retries={{"max_retries": {max_retries}, "backoff_s": 0}})
        def only() -> str:
            return "done"

        @workflow
        def one():
            only()
        """}))


def test_a_task_whose_job_vanished_is_found_by_the_sweeper_and_retried(r: redis.Redis, redis_url: str,
                                                                       tmp_path: Path) -> None:
    project = _one_task_retried(tmp_path, 1)
    settings = Settings(redis_url=redis_url, project=tmp_path, engine_stall_s=0.01)
    stack = Stack(r, settings, project)
    event_id = stack.emit("t.x", None)
    stack.engine.step(block=False)
    r.delete(Job.key_for(f"{derive_run_id('r', '/orch/client', event_id)}-only-1"))  # the job is lost
    for queue in project.queues:
        r.delete(f"rq:queue:orch.{queue}")
    time.sleep(0.05)  # older than engine_stall_s

    assert Sweep(stack.engine).sweep(scan_runs=True) == 1
    stack.drain()

    run = stack.run("r", "/orch/client", event_id)
    task = run.tasks["only"]
    assert run.status is RunStatus.SUCCEEDED and task.attempt == 2
    assert task.history[0]["error_type"] == "JobLost"


def test_a_worker_that_wrote_its_result_then_left_is_not_taken_for_lost(r: redis.Redis, redis_url: str,
                                                                        tmp_path: Path) -> None:
    """A scale-in: the worker finishes its task, writes the result and deregisters (its heartbeat key is
    gone) before the engine has read the result. The sweep must wait for that result, not fail the
    attempt as WorkerLost and run the task a second time."""
    project = _one_task_retried(tmp_path, 3)
    stack = Stack(r, Settings(redis_url=redis_url, project=tmp_path), project)
    event_id = stack.emit("t.x", None)
    stack.engine.step(block=False)
    run_id = derive_run_id("r", "/orch/client", event_id)
    keys = stack.engine.keys

    def report(kind: RecordKind) -> None:
        r.xadd(keys.results, TaskRecord(kind, run_id, "only", 1, time.time(), worker="leaver", result="done").to_fields())

    report(RecordKind.STARTED)
    stack.engine.step(block=False)  # the start is applied: the attempt is in flight on "leaver"
    assert r.hget(keys.inflight, f"{run_id}\x1fonly\x1f1") == b"leaver"
    report(RecordKind.SUCCEEDED)  # ... its result is written; "leaver" never had (or no longer has) a heartbeat
    sweep = Sweep(stack.engine)
    assert sweep.sweep() == 0 and len(sweep.suspects) == 1, "held until the result written before is applied"
    stack.engine.step(block=False)
    assert sweep.sweep() == 0 and len(sweep.suspects) == 0

    run = stack.run("r", "/orch/client", event_id)
    assert run.status is RunStatus.SUCCEEDED and run.tasks["only"].attempt == 1


def test_an_attempt_whose_worker_died_silently_fails_as_soon_as_the_stream_is_applied(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    stack = Stack(r, Settings(redis_url=redis_url, project=tmp_path), load_project(EXAMPLES))
    event_id = stack.emit("user.signup", {"email": "a@b", "plan": "pro"}, source="/accounts")
    stack.engine.step(block=False)
    run_id = derive_run_id("welcome-paid-users", "/accounts", event_id)
    node = next(iter(stack.run("welcome-paid-users", "/accounts", event_id).tasks))
    r.xadd(stack.engine.keys.results, TaskRecord(RecordKind.STARTED, run_id, node, 1, time.time(),
                                                 worker="ghost").to_fields())
    stack.engine.step(block=False)
    assert Sweep(stack.engine).sweep() == 1  # nothing of "ghost" is left unapplied: lost at once
    task = stack.run("welcome-paid-users", "/accounts", event_id).tasks[node]
    assert "WorkerLost" in [task.error_type, *(h.get("error_type") for h in task.history)]


def _one_at_a_time(root: Path) -> Project:
    """A project whose workflow runs at most once at a time (concurrency=1), started by t.x events."""
    return load_project(make_project(root, rules="""\
        rules:
          - {name: r, type: t.x, workflow: one_at_a_time}
        """, workflows={"limited": """\
        from orchestrator import task, workflow

        @task
        def step() -> str:
            return "done"

        @workflow(concurrency=1)
        def one_at_a_time():
            step()
        """}))


def test_a_workflow_concurrency_limit_queues_runs_until_a_slot_frees(r: redis.Redis, redis_url: str,
                                                                      tmp_path: Path) -> None:
    project = _one_at_a_time(tmp_path)
    stack = Stack(r, Settings(redis_url=redis_url, project=tmp_path), project)
    ids = [stack.emit("t.x", None) for _ in range(3)]
    stack.engine.step(block=False)
    runs = [stack.run("r", "/orch/client", i) for i in ids]
    assert [str(run.status) for run in runs] == ["running", "queued", "queued"]
    assert set(r.zrange("orch:slots:workflow/one_at_a_time:held", 0, -1)) == {runs[0].id.encode()}
    queued = stack.engine.store.list(status="queued")
    assert sorted(q["id"] for q in queued) == sorted(run.id for run in runs[1:])

    stack.drain()

    done = [stack.run("r", "/orch/client", i) for i in ids]
    assert [str(run.status) for run in done] == ["succeeded"] * 3
    spans = sorted((run.tasks["step"].queued_at, run.finished_at) for run in done)
    assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:], strict=False))  # never two at once
    assert r.zcard("orch:slots:workflow/one_at_a_time:held") == 0


def test_cancelling_a_queued_run_does_not_take_a_slot(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    from orchestrator.state.steer import request

    project = _one_at_a_time(tmp_path)
    stack = Stack(r, Settings(redis_url=redis_url, project=tmp_path), project)
    ids = [stack.emit("t.x", None) for _ in range(3)]
    stack.engine.step(block=False)
    second = stack.run("r", "/orch/client", ids[1])
    request(r, stack.engine.keys, stack.engine.store, "cancel", second.id)
    stack.drain()

    statuses = [str(stack.run("r", "/orch/client", i).status) for i in ids]
    assert statuses == ["succeeded", "cancelled", "succeeded"]


@pytest.mark.parametrize("action", ["retry", "rerun"])
def test_a_retry_or_rerun_waits_for_a_slot_like_a_new_run(r: redis.Redis, redis_url: str, tmp_path: Path,
                                                          action: str) -> None:
    """Slots used to be taken only by new runs: a retried or rerun run ran beside a running one."""
    from orchestrator.state.steer import request

    project = _one_at_a_time(tmp_path)
    stack = Stack(r, Settings(redis_url=redis_url, project=tmp_path), project)
    first, second = stack.emit("t.x", None), stack.emit("t.x", None)
    stack.engine.step(block=False)
    cancelled = stack.run("r", "/orch/client", first)
    request(r, stack.engine.keys, stack.engine.store, "cancel", cancelled.id)
    stack.engine.step(block=False)  # the cancel frees the slot: a `start` record for the second run...
    stack.engine.step(block=False)  # ...which starts it
    holder = stack.run("r", "/orch/client", second)
    assert str(holder.status) == "running"

    steered = request(r, stack.engine.keys, stack.engine.store, action, cancelled.id)
    stack.engine.step(block=False)

    waiting = stack.engine.store.get(steered.new_run or cancelled.id)
    assert waiting is not None and str(waiting.status) == "queued", "it must wait for the running run's slot"
    assert set(r.zrange("orch:slots:workflow/one_at_a_time:held", 0, -1)) == {holder.id.encode()}
    assert [q["id"] for q in stack.engine.store.list(status="queued", workflow="one_at_a_time")] == [waiting.id]
    stack.drain()
    done = stack.engine.store.get(waiting.id)
    assert done is not None and str(done.status) == "succeeded"
    assert done.tasks["step"].queued_at >= stack.run("r", "/orch/client", second).finished_at  # type: ignore[operator]
    assert r.zcard("orch:slots:workflow/one_at_a_time:held") == 0


def test_an_engine_stops_at_start_on_what_waiting_cannot_fix(stack: Stack, r: redis.Redis) -> None:
    """A Redis away, loading or failing over is waited out; a key of the wrong type (another program's,
    under orch's prefix) or an ACL that forbids a command is a configuration to fix: the engine says so
    and stops, instead of looking alive while doing nothing."""
    r.delete(stack.engine.keys.events)
    r.set(stack.engine.keys.events, "not a stream")
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            stack.engine.run(threading.Event())
        except redis.RedisError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)  # a hang guard: without the check, the start is retried for ever
    assert len(outcome) == 1 and "WRONGTYPE" in str(outcome[0])


def test_a_map_longer_than_a_dispatch_chunk_runs_every_item_once_in_order(r: redis.Redis, redis_url: str,
                                                                         tmp_path: Path) -> None:
    """Items go out a chunk per commit (the first start while the rest are queued), the rest through a
    timer due at once: a real engine and worker run all of them, once each, and fan in in order."""
    n = DISPATCH_CHUNK * 2 + 7
    project = load_project(make_project(tmp_path, rules="""\
        rules:
          - {name: r, type: t.x, workflow: wide}
        """, workflows={"wide": f"""\
        from orchestrator import task, workflow

        @task
        def listing() -> list[int]:
            return list(range({n}))

        @task
        def square(item: int) -> int:
            return item * item

        @task
        def total(values: list[int]) -> int:
            return sum(values)

        @workflow
        def wide():
            total(square.map(listing()))
        """}))
    stack = Stack(r, Settings(redis_url=redis_url, project=tmp_path), project)
    event_id = stack.emit("t.x", None)
    stack.drain(rounds=40)
    run = stack.run("r", "/orch/client", event_id)
    assert run.status is RunStatus.SUCCEEDED
    assert run.tasks["square"].result == [i * i for i in range(n)]
    assert run.tasks["total"].result == sum(i * i for i in range(n))
    assert all(run.tasks[f"square[{i}]"].attempt == 1 for i in range(n))
    assert r.zcard(stack.engine.keys.timers) == 0, "no continuation left behind"
