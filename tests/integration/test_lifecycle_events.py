"""⑧ Runs announce their lifecycle into the events stream, with a real engine, real RQ workers and a real Redis:
each event type with its data and causation, published once per transition, and the two examples that
rules build on them (chaining `ingest` -> `report`, and alerting Slack on failures)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator.cli.wiring import load_project
from orchestrator.events.publish import Planner
from orchestrator.jsonutil import loads
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.steer import SteeringError
from orchestrator.state.steer import request as steer
from orchestrator.workflows import announce
from orchestrator.workflows.advance import Change
from orchestrator.workflows.runs import Run, RunStatus, derive_run_id

from ..helpers import EXAMPLES, wait_for
from ..inproc import Stack
from ..projects import copy_examples, make_project

RULES = """
    rules:
      - {name: run-ok, type: lc.ok, workflow: fine, params: {n: "{{ data.n }}"}}
      - {name: run-bad, type: lc.bad, workflow: broken, params: {n: "{{ data.n }}"}}
      - {name: run-stuck, type: lc.stuck, workflow: stuck, params: {n: "{{ data.n }}"}}
      - {name: run-fan, type: lc.fan, workflow: fan, params: {ns: "{{ data.ns }}"}}
"""
WORKFLOWS = {"lifecycle_flows": """
    from orchestrator import task, workflow

    @task
    def ok(n: int) -> int:
        return n

    @task(retries={"max_retries": 1, "backoff_s": 0.01})
    def bad(n: int) -> int:
        raise ValueError(f"bad {n}")

    @task(queue="nowhere")
    def never(n: int) -> int:
        return n

    @workflow
    def fine(n: int):
        ok(n)

    @workflow
    def broken(n: int):
        bad(n)

    @workflow(timeout_s=0.3)
    def stuck(n: int):
        never(n)

    @task
    def odd_only(n: int) -> int:
        if n % 2 == 0:
            raise ValueError(f"even {n}")
        return n

    @workflow
    def fan(ns: list):
        odd_only.map(ns)
"""}


@pytest.fixture
def stack(r: redis.Redis, redis_url: str, tmp_path: Path) -> Stack:
    project = load_project(make_project(tmp_path, rules=RULES, workflows=WORKFLOWS))
    return Stack(r, Settings(redis_url=redis_url, project=tmp_path), project)


def lifecycle_of(r: redis.Redis, run_id: str) -> list[dict[str, Any]]:
    """The lifecycle events about `run_id` in the stream, in order."""
    events = [loads(fields[b"e"]) for _, fields in r.xrange(Keys().events)]
    return [e for e in events if e["source"].startswith("/runs/") and e["subject"] == run_id]


def finished(stack: Stack, run_id: str, *, workers: bool = True) -> Run:
    def done() -> Run | None:
        stack.drain() if workers else stack.engine.step(block=False)
        run = stack.engine.store.get(run_id)
        return run if run is not None and run.status not in (RunStatus.RUNNING, RunStatus.QUEUED) else None

    return wait_for(done, 20, f"run {run_id} to finish")


def test_a_run_that_succeeds_announces_its_start_and_its_end(stack: Stack, r: redis.Redis) -> None:
    event_id = stack.emit("lc.ok", {"n": 1}, source="/lc")
    run = finished(stack, derive_run_id("run-ok", "/lc", event_id))

    started, succeeded = lifecycle_of(r, run.id)
    cause = {"id": event_id, "source": "/lc", "type": "lc.ok"}
    assert (started["type"], started["id"], started["source"]) == ("orch.run.started", f"{run.id}.started.1",
                                                                    "/runs/fine")
    assert (succeeded["type"], succeeded["id"]) == ("orch.run.succeeded", f"{run.id}.succeeded.1")
    for event in (started, succeeded):
        assert (event["orchrun"], event["orchdepth"], event["subject"]) == (run.id, 1, run.id)
        data = event["data"]
        assert (data["run_id"], data["workflow"], data["version"], data["rule"]) == (run.id, "fine",
                                                                                   run.spec.digest, "run-ok")
        assert data["event"] == cause and data["params"] == {"n": 1}
    assert succeeded["data"]["status"] == "succeeded" and succeeded["data"]["error"] is None
    assert succeeded["data"]["duration_s"] == run.duration_s
    assert succeeded["time"] == run.finished_at.isoformat().replace("+00:00", "Z")  # type: ignore[union-attr]


def test_a_task_out_of_retries_announces_its_failure_and_the_run_its_own(stack: Stack, r: redis.Redis) -> None:
    event_id = stack.emit("lc.bad", {"n": 2}, source="/lc")
    run = finished(stack, derive_run_id("run-bad", "/lc", event_id))

    assert [e["type"] for e in lifecycle_of(r, run.id)] == ["orch.run.started", "orch.task.failed",
                                                             "orch.run.failed"], "not one per attempt"
    _, task_failed, run_failed = lifecycle_of(r, run.id)
    assert (task_failed["id"], task_failed["orchtask"]) == (f"{run.id}.task.bad.2", "bad")
    assert task_failed["data"]["task"]["attempt"] == 2 and task_failed["data"]["task"]["queue"] == "default"
    assert task_failed["data"]["error"]["type"] == "ValueError"
    assert task_failed["data"]["error"]["message"] == "ValueError: bad 2", "its headline, no traceback"
    assert "Traceback" in run.tasks["bad"].error  # type: ignore[operator]  # the run keeps it (runs:read)
    assert run_failed["data"]["status"] == "failed"
    assert run_failed["data"]["error"] == {"type": "ValueError", "message": run.error}
    assert run_failed["data"]["event"] == {"id": event_id, "source": "/lc", "type": "lc.bad"}


def test_a_timed_out_run_and_a_cancelled_run_say_so(stack: Stack, r: redis.Redis) -> None:
    stuck = derive_run_id("run-stuck", "/lc", stack.emit("lc.stuck", {"n": 3}, source="/lc"))
    timed_out = finished(stack, stuck, workers=False)  # nobody serves the queue: the timeout fires
    cancelled_id = derive_run_id("run-stuck", "/lc", stack.emit("lc.stuck", {"n": 4}, source="/lc"))
    stack.engine.step(block=False)
    steer(r, Keys(), stack.engine.store, "cancel", cancelled_id, by="ops-alice")
    cancelled = finished(stack, cancelled_id, workers=False)

    assert [e["type"] for e in lifecycle_of(r, timed_out.id)] == ["orch.run.started", "orch.run.timed_out"]
    assert lifecycle_of(r, timed_out.id)[1]["data"]["error"] == {"type": "RunTimeout",
                                                                 "message": "the run timed out after 0.3s"}
    assert cancelled.status is RunStatus.CANCELLED
    end = lifecycle_of(r, cancelled.id)[-1]
    assert end["type"] == "orch.run.cancelled" and end["data"]["status"] == "cancelled"
    assert end["data"]["error"] == {"type": "Cancelled", "message": "cancelled by ops-alice"}


def test_announcing_a_transition_again_publishes_nothing_new(stack: Stack, r: redis.Redis) -> None:
    run = finished(stack, derive_run_id("run-ok", "/lc", stack.emit("lc.ok", {"n": 5}, source="/lc")))
    before = r.xlen(Keys().events)

    replayed = Change(run, finished=True)  # as if a replayed batch ended the run once more
    events = announce.announcements([replayed], datetime.now(UTC))
    with r.pipeline(transaction=True) as pipe:
        Planner(Keys(), dedup_window_s=60, max_bytes=announce.MAX_BYTES, trigger="engine").queue_on(pipe, events)
        pipe.execute()

    assert [e.id for e in events] == [f"{run.id}.succeeded.1"]
    assert r.xlen(Keys().events) == before, "same source and id: deduplicated"


def test_with_lifecycle_events_off_nothing_is_announced(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path, rules=RULES, workflows=WORKFLOWS))
    quiet = Stack(r, Settings(redis_url=redis_url, project=tmp_path, lifecycle_events=False), project)
    run = finished(quiet, derive_run_id("run-ok", "/lc", quiet.emit("lc.ok", {"n": 6}, source="/lc")))

    assert run.status is RunStatus.SUCCEEDED and lifecycle_of(r, run.id) == []


# -- the examples: chaining and alerting ---------------------------------------------------------------------


def test_the_chaining_example_runs_report_when_ingest_succeeds(r: redis.Redis, settings: Settings) -> None:
    stack = Stack(r, settings, load_project(EXAMPLES))
    event_id = stack.emit("dataset.uploaded", {"dataset": "sales-2024-05", "rows": 4}, source="/uploads")
    ingest = finished(stack, derive_run_id("ingest-uploaded-datasets", "/uploads", event_id))
    assert ingest.status is RunStatus.SUCCEEDED

    report = finished(stack, derive_run_id("report-after-ingest", "/runs/ingest", f"{ingest.id}.succeeded.1"))

    assert report.status is RunStatus.SUCCEEDED and report.depth == 1
    assert report.params == {"dataset": "sales-2024-05", "ingest_run": ingest.id,
                             "ingest_duration_s": ingest.duration_s}
    assert report.event.type == "orch.run.succeeded" and report.event.source == "/runs/ingest"
    assert report.tasks["summarize_dataset"].result.startswith(f"report on sales-2024-05: ingested by run {ingest.id}")
    assert lifecycle_of(r, report.id)[-1]["orchdepth"] == 2


class _Hook(http.server.BaseHTTPRequestHandler):
    status = 200
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append(json.loads(body))
        self.send_response(type(self).status)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Hook]]:
    """A stand-in for Slack's incoming webhook on loopback; SLACK_WEBHOOK_URL points the example at it."""
    hook = type("Hook", (_Hook,), {"received": [], "status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/test")
    yield hook
    server.shutdown()
    thread.join()
    server.server_close()


def alerting_examples(tmp_path: Path) -> Path:
    """The examples with the alert rule switched on, as its comment says to."""
    project = copy_examples(tmp_path / "project")
    rules = project / "rules" / "alerts.yaml"
    rules.write_text(rules.read_text().replace("enabled: false", "enabled: true"))
    return project


@pytest.mark.parametrize("answer", [200, 404])
def test_the_alert_example_posts_failed_runs_to_slack_once(r: redis.Redis, redis_url: str, tmp_path: Path,
                                                         slack: type[_Hook], answer: int) -> None:
    slack.status = answer
    project = alerting_examples(tmp_path)
    stack = Stack(r, Settings(redis_url=redis_url, project=project, http_allow=("127.0.0.1",)), load_project(project))
    event_id = stack.emit("order.created", {"order_id": "A-9", "amount": -1}, source="/shop")
    failed = finished(stack, derive_run_id("process-new-orders", "/shop", event_id))
    alert = finished(stack, derive_run_id("alert-failed-runs", "/runs/process_order", f"{failed.id}.failed.1"))

    (posted,) = slack.received
    assert posted["text"].startswith(f"process_order run {failed.id} failed (rule process-new-orders, ")
    assert "ValueError: task charge_payment failed: ValueError: cannot charge a non-positive amount" in posted["text"]
    if answer == 200:
        assert alert.status is RunStatus.SUCCEEDED
        return
    # Slack refused it: the alert failed, which the rule sees too; that second alert skips its post
    assert alert.status is RunStatus.FAILED
    again = finished(stack, derive_run_id("alert-failed-runs", "/runs/alert_slack", f"{alert.id}.failed.1"))
    assert again.status is RunStatus.SUCCEEDED and str(again.tasks["post_to_slack"].state) == "skipped"
    stack.drain()
    assert len(slack.received) == 1 and r.zcard("orch:runs:workflow:alert_slack") == 2


def test_a_mapped_task_that_fails_announces_once_naming_its_items(stack: Stack, r: redis.Redis) -> None:
    run = finished(stack, derive_run_id("run-fan", "/lc", stack.emit("lc.fan", {"ns": [1, 2, 3, 4]}, source="/lc")))

    assert [e["type"] for e in lifecycle_of(r, run.id)] == ["orch.run.started", "orch.task.failed",
                                                             "orch.run.failed"], "once, not once per item too"
    _, task_failed, _ = lifecycle_of(r, run.id)
    assert (task_failed["id"], task_failed["orchtask"]) == (f"{run.id}.task.odd_only.s1", "odd_only")
    about = task_failed["data"]["task"]
    assert (about["items"], about["failed_items_count"]) == (4, 2)
    assert [(i["node"], i["error"]) for i in about["failed_items"]] == [
        ("odd_only[1]", {"type": "ValueError", "message": "ValueError: even 2"}),
        ("odd_only[3]", {"type": "ValueError", "message": "ValueError: even 4"})]


def test_a_run_whose_parameters_did_not_render_is_not_retried_with_none(stack: Stack, r: redis.Redis) -> None:
    run = finished(stack, derive_run_id("run-ok", "/lc", stack.emit("lc.ok", {}, source="/lc")))
    assert run.never_started and run.params == {}

    for action in ("retry", "rerun"):
        with pytest.raises(SteeringError, match="never started") as refused:
            steer(r, Keys(), stack.engine.store, action, run.id, by="ops-alice")
        assert refused.value.status == 409
    assert [e["data"]["error"]["type"] for e in lifecycle_of(r, run.id)] == ["InvalidParams"]
