"""End to end: events in through the Python client, the CLI and HTTP (all three CloudEvents modes);
runs out, visible through the CLI and the HTTP API. Every component is a separate process."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import pytest

from orchestrator import Client
from orchestrator.settings import Settings
from orchestrator.workflows.runs import derive_run_id

from ..helpers import wait_for
from .conftest import Stack, orch, orch_json

pytestmark = pytest.mark.e2e

RULE = "process-new-orders"


def _order(order_id: str, amount: float = 12.5, items: list[str] | None = None) -> dict[str, Any]:
    return {"order_id": order_id, "amount": amount, "items": items if items is not None else ["book"]}


def _wait_run(stack: Stack, source: str, event_id: str, rule: str = RULE) -> dict[str, Any]:
    run_id = derive_run_id(rule, source, event_id)

    def finished() -> dict[str, Any] | None:
        response = stack.http().get(f"/runs/{run_id}")
        if response.status_code == 200 and response.json()["status"] != "running":
            return dict(response.json())
        return None

    return wait_for(finished, 30, f"run {run_id} of event {event_id} to finish")


def _assert_order_ran(run: dict[str, Any], order_id: str, amount: float, items: int) -> None:
    assert run["status"] == "succeeded", run
    tasks = {t["node"]: t for t in run["tasks"]}
    assert [t["node"] for t in run["tasks"]] == ["charge_payment", "reserve_stock", "send_confirmation"]
    assert all(t["state"] == "succeeded" and t["attempt"] == 1 for t in tasks.values())
    confirm_started = datetime.fromisoformat(tasks["send_confirmation"]["started_at"])
    for upstream in ("charge_payment", "reserve_stock"):
        assert datetime.fromisoformat(tasks[upstream]["finished_at"]) <= confirm_started
    assert tasks["send_confirmation"]["upstream"] == ["charge_payment", "reserve_stock"]
    assert tasks["send_confirmation"]["result"] == f"order {order_id}: charged {amount:.2f}, reserved {items} item(s)"


def test_python_client(stack: Stack) -> None:
    with Client(settings=Settings(redis_url=stack.redis.url), source="/e2e/python") as client:
        event_id = client.emit("order.created", _order("PY-1", 10.0, ["a", "b"]))
    _assert_order_ran(_wait_run(stack, "/e2e/python", event_id), "PY-1", 10.0, 2)


def test_cli_emit(stack: Stack) -> None:
    out = orch_json("emit", "order.created", "--data", json.dumps(_order("CLI-1", 7.25)), "--source", "/e2e/cli",
                    env=stack.env)
    assert out["duplicate"] is False
    _assert_order_ran(_wait_run(stack, "/e2e/cli", out["id"]), "CLI-1", 7.25, 1)


def test_cli_emit_data_file_and_a_repeated_id(stack: Stack, tmp_path: Any) -> None:
    data = tmp_path / "order.json"
    data.write_text(json.dumps(_order("CLI-2", 3.0)))
    first = orch("emit", "order.created", "--data-file", str(data), "--source", "/e2e/cli", "--id", "fixed-1",
                 env=stack.env)
    again = orch("emit", "order.created", "--data-file", str(data), "--source", "/e2e/cli", "--id", "fixed-1",
                 env=stack.env)
    assert first.stdout.strip() == "fixed-1"
    assert "duplicate" in again.stdout
    _assert_order_ran(_wait_run(stack, "/e2e/cli", "fixed-1"), "CLI-2", 3.0, 1)


def test_http_structured_mode(stack: Stack) -> None:
    event_id = uuid.uuid4().hex
    event = {"specversion": "1.0", "id": event_id, "source": "/e2e/http", "type": "order.created",
             "time": "2026-11-23T10:00:00+01:00", "data": _order("HS-1", 99.99)}
    response = stack.http().post("/events", content=json.dumps(event),
                                 headers={"content-type": "application/cloudevents+json"})
    assert response.status_code == 202 and response.json() == {"ids": [event_id], "duplicates": []}
    _assert_order_ran(_wait_run(stack, "/e2e/http", event_id), "HS-1", 99.99, 1)


def test_http_binary_mode(stack: Stack) -> None:
    event_id = uuid.uuid4().hex
    response = stack.http().post("/events", content=json.dumps(_order("HB-1", 1.5, [])), headers={
        "content-type": "application/json", "ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/e2e/http",
        "ce-type": "order.created", "ce-subject": "HB-1"})
    assert response.status_code == 202 and response.json()["ids"] == [event_id]
    _assert_order_ran(_wait_run(stack, "/e2e/http", event_id), "HB-1", 1.5, 0)


def test_http_batch_mode(stack: Stack) -> None:
    ids = [uuid.uuid4().hex for _ in range(3)]
    batch = [{"specversion": "1.0", "id": i, "source": "/e2e/batch", "type": "order.created",
              "data": _order(f"BATCH-{n}", n + 1)} for n, i in enumerate(ids)]
    batch.append({"specversion": "1.0", "id": "u1", "source": "/e2e/batch", "type": "user.signup",
                  "data": {"email": "ada@example.com", "plan": "team"}})
    response = stack.http().post("/events", content=json.dumps(batch),
                                 headers={"content-type": "application/cloudevents-batch+json"})
    assert response.status_code == 202 and response.json()["ids"] == [*ids, "u1"]
    for n, event_id in enumerate(ids):
        _assert_order_ran(_wait_run(stack, "/e2e/batch", event_id), f"BATCH-{n}", n + 1, 1)
    welcome = _wait_run(stack, "/e2e/batch", "u1", rule="welcome-paid-users")
    assert welcome["status"] == "succeeded"
    assert welcome["tasks"][0]["result"] == {"to": "ada@example.com", "subject": "Welcome to the team plan"}


def test_runs_and_events_are_visible_in_the_cli_and_the_api(stack: Stack) -> None:
    with Client(settings=Settings(redis_url=stack.redis.url), source="/e2e/visible") as client:
        event_id = client.emit("order.created", _order("VIS-1", 5.0))
    run = _wait_run(stack, "/e2e/visible", event_id)

    listed = orch_json("runs", "list", "--workflow", "process_order", "--limit", "100", env=stack.env)
    assert run["id"] in [r["id"] for r in listed]
    assert orch_json("runs", "list", "--status", "failed", env=stack.env) == []
    shown = orch_json("runs", "show", run["id"], env=stack.env)
    assert shown["id"] == run["id"] and [t["state"] for t in shown["tasks"]] == ["succeeded"] * 3
    human = orch("runs", "show", run["id"], env=stack.env).stdout
    assert run["id"] in human and "send_confirmation" in human and "succeeded" in human
    assert run["id"] in orch("runs", "list", env=stack.env).stdout

    api_runs = stack.http().get("/runs", params={"workflow": "process_order", "status": "succeeded", "limit": 100})
    assert run["id"] in [r["id"] for r in api_runs.json()]
    assert stack.http().get("/runs/nope").status_code == 404

    events = orch_json("events", "list", "--type", "order.*", "--limit", "100", env=stack.env)
    assert event_id in [e["id"] for e in events]
    api_events = stack.http().get("/events", params={"limit": 5, "type": "order.*"}).json()
    assert api_events[0]["id"] == event_id and api_events[0]["data"]["order_id"] == "VIS-1"


def test_a_failing_order_shows_its_error(stack: Stack) -> None:
    with Client(settings=Settings(redis_url=stack.redis.url), source="/e2e/fail") as client:
        event_id = client.emit("order.created", _order("BAD-1", -5))
    run = _wait_run(stack, "/e2e/fail", event_id)
    assert run["status"] == "failed"
    assert run["error"] == "task charge_payment failed: ValueError: cannot charge a non-positive amount: -5"
    states = {t["node"]: t["state"] for t in run["tasks"]}
    assert states == {"charge_payment": "failed", "reserve_stock": "succeeded", "send_confirmation": "skipped"}
    assert "failed" in orch("runs", "show", run["id"], env=stack.env).stdout


def test_the_example_batch_retries_its_flaky_payments_and_fans_in(stack: Stack) -> None:
    with Client(settings=Settings(redis_url=stack.redis.url), source="/e2e/batch") as client:
        event_id = client.emit("payment.batch", {"batch_id": "B-1", "size": 7})
    run = _wait_run(stack, "/e2e/batch", event_id, rule="settle-payment-batches")
    tasks = {t["node"]: t for t in run["tasks"]}
    assert run["status"] == "succeeded", run
    assert tasks["summarize"]["result"] == {"payments": 7, "total": sum(10 + i for i in range(7))}
    assert tasks["flag_failures"]["state"] == "skipped"
    assert [tasks[f"settle[{i}]"]["attempt"] for i in range(7)] == [2, 1, 1, 2, 1, 1, 2]  # every third retried
    assert tasks["settle[3]"]["history"][0]["error_type"] == "ConnectionError"


def test_the_example_deploy_check_calls_http_and_runs_a_command(stack: Stack) -> None:
    with Client(settings=Settings(redis_url=stack.redis.url), source="/e2e/deploy") as client:
        event_id = client.emit("deploy.finished", {"service": "api", "url": f"{stack.api}/healthz"})
    run = _wait_run(stack, "/e2e/deploy", event_id, rule="check-finished-deploys")
    tasks = {t["node"]: t for t in run["tasks"]}
    assert run["status"] == "succeeded", run
    assert tasks["health"]["result"]["status"] == 200 and tasks["health"]["result"]["body"]["status"] == "ok"
    assert tasks["summarize_deploy"]["result"] == "api: HTTP 200, deploy of api checked"


def test_metrics_endpoint(stack: Stack) -> None:
    response = stack.http().get("/metrics")
    assert response.status_code == 200
    assert "orch_workflow_runs_started_total" in response.text
    assert 'http_server_request_duration_seconds_count{method="GET",route="/runs/{run_id}"' in response.text
