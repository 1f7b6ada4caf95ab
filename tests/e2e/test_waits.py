"""Wait steps through real `orch` processes, on a copy of the example project, as a user drives them: a run
waits for its payment event and for an approval (`orch runs approve`, POST /runs/{id}/tasks/{task}/approve)
while the only worker goes on running other work."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..helpers import wait_for
from ..projects import copy_examples
from .conftest import Stack, create_token, orch, orch_json, start_stack, stop_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("waits")
    running = start_stack(root, copy_examples(root / "project"), workers=1)  # one worker: waits must not hold it
    yield running
    stop_stack(running)


def emit(stack: Stack, type: str, data: dict[str, Any]) -> str:
    out = orch("emit", type, "--data", json.dumps(data), "--json", env=stack.env)
    return str(json.loads(out.stdout)["id"])


def run_of(stack: Stack, event_id: str) -> str:
    runs = wait_for(lambda: [r for r in orch_json("runs", "list", "-n", "200", env=stack.env)
                             if r["event"]["id"] == event_id], 20, "the event's run")
    return str(runs[0]["id"])


def task_state(stack: Stack, run_id: str, node: str) -> str:
    run = orch_json("runs", "show", run_id, env=stack.env)
    return str(next(t for t in run["tasks"] if t["node"] == node)["state"])


def waiting(stack: Stack, run_id: str, node: str) -> None:
    wait_for(lambda: task_state(stack, run_id, node) == "waiting", 30, f"{node} to wait")


def finished(stack: Stack, run_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = orch_json("runs", "show", run_id, env=stack.env)
        return run if run["status"] != "running" else None
    return wait_for(done, 30, f"run {run_id} to finish", interval_s=0.2)


def test_a_run_waits_for_its_payment_and_an_approval_without_holding_the_worker(stack: Stack) -> None:
    run_id = run_of(stack, emit(stack, "order.placed", {"order_id": "F-1", "amount": 120}))
    waiting(stack, run_id, "payment")

    other = run_of(stack, emit(stack, "order.created", {"order_id": "A-1", "amount": 5, "items": ["pen"]}))
    assert finished(stack, other)["status"] == "succeeded", "the one worker is free while a run waits"

    emit(stack, "payment.received", {"order_id": "F-2", "amount": 120, "currency": "EUR"})  # another order's
    emit(stack, "payment.received", {"order_id": "F-1", "amount": 120, "currency": "EUR"})
    waiting(stack, run_id, "release")
    shown = orch("runs", "show", run_id, env=stack.env).stdout
    assert "release" in shown and "waiting" in shown

    approved = orch_json("runs", "approve", run_id, "--task", "release", "--data", '{"note": "checked"}', "--wait",
                         env=stack.env)
    assert approved["action"] == "approve" and approved["task"] == "release" and approved["status"] == "succeeded"
    run = approved["result"]
    ship = next(t for t in run["tasks"] if t["node"] == "ship")
    assert ship["result"] == "parcel-F-1 shipped: paid 120 EUR (checked)"
    assert run["steering"][-1]["action"] == "approve" and run["steering"][-1]["task"] == "release"

    again = orch("runs", "approve", run_id, "--task", "release", env=stack.env, check=False)
    assert again.returncode == 1 and "not waiting for an approval" in again.stderr
    bad = orch("runs", "approve", run_id, "--task", "release", "--data", "{nope", env=stack.env, check=False)
    assert bad.returncode != 0 and "--data is not JSON" in bad.stderr


def test_of_two_approvals_at_once_exactly_one_reports_success(stack: Stack) -> None:
    """Two people approve the same step at the same moment: one is applied; the other is told it was not
    (refused at the check, or, when both passed it, "already approved by"), with exit code 1."""
    run_id = run_of(stack, emit(stack, "order.placed", {"order_id": "F-3", "amount": 80}))
    waiting(stack, run_id, "payment")
    emit(stack, "payment.received", {"order_id": "F-3", "amount": 80, "currency": "EUR"})
    waiting(stack, run_id, "release")

    command = [sys.executable, "-m", "orchestrator", "runs", "approve", run_id, "--task", "release", "--wait"]
    both = [subprocess.Popen(command, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outcomes = sorted((p.returncode, err) for p in both for _, err in [p.communicate(timeout=60)])
    assert [code for code, _ in outcomes] == [0, 1], outcomes
    assert "already approved by" in outcomes[1][1] or "not waiting for an approval" in outcomes[1][1]
    run = finished(stack, run_id)
    assert [s["action"] for s in run["steering"]] == ["approve"]


def test_the_approve_route_needs_runs_steer_and_records_the_tokens_name(stack: Stack) -> None:
    run_id = run_of(stack, emit(stack, "refund.requested", {"order_id": "F-3", "amount": 20}))
    waiting(stack, run_id, "approve_refund")
    url = f"{stack.api}/runs/{run_id}/tasks/approve_refund/approve"
    reader = create_token(stack.env, "waits-reader", "runs:read")
    approver = create_token(stack.env, "finance-bob", "runs:steer")

    assert httpx.post(url, json={"data": {}}, timeout=10).status_code == 401
    assert httpx.post(url, json={"data": {}}, headers={"Authorization": f"Bearer {reader}"}, timeout=10).status_code \
        == 403
    bad = httpx.post(url, content=b"[1]", headers={"Authorization": f"Bearer {approver}"}, timeout=10)
    assert bad.status_code == 422
    missing = httpx.post(f"{stack.api}/runs/{run_id}/tasks/nope/approve", headers={"Authorization": f"Bearer {approver}"},
                         timeout=10)
    assert missing.status_code == 404 and "no task 'nope'" in missing.json()["error"]

    answer = httpx.post(url, json={"data": {"by_policy": "under 50"}}, headers={"Authorization": f"Bearer {approver}"},
                        timeout=10)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"action": "approve", "run": run_id, "task": "approve_refund",
                             "request": answer.json()["request"]}
    waiting(stack, run_id, "settled")
    emit(stack, "refund.settled", {"order_id": "F-3", "status": "paid"})

    run = finished(stack, run_id)
    assert run["status"] == "succeeded"
    tasks = {t["node"]: t for t in run["tasks"]}
    assert tasks["approve_refund"]["via"]["approved_by"] == "finance-bob"
    assert tasks["approve_refund"]["result"] == {"by_policy": "under 50"}
    assert tasks["settled"]["result"] == {"order_id": "F-3", "status": "paid"}
    assert tasks["record"]["result"]["stdout"].strip() == "refund of F-3 (20): paid"
    assert [(s["action"], s["by"]) for s in run["steering"]] == [("approve", "finance-bob")]


def test_the_examples_validate(stack: Stack) -> None:
    out = orch("validate", "--project", str(Path(stack.project)), env=stack.env)
    assert "workflow fulfil_order: pack -> payment -> release -> ship" in out.stdout
    assert "workflow refund_order: approve_refund -> settled -> record" in out.stdout


def test_the_task_page_shows_what_a_step_waits_for_and_approves_it(stack: Stack) -> None:
    from orchestrator.ui.session import csrf_token

    run_id = run_of(stack, emit(stack, "order.placed", {"order_id": "F-9", "amount": 5}))
    waiting(stack, run_id, "payment")
    emit(stack, "payment.received", {"order_id": "F-9", "amount": 5, "currency": "USD"})
    waiting(stack, run_id, "release")
    token = create_token(stack.env, "ui-approver", "runs:steer", "runs:read")
    with httpx.Client(base_url=stack.api, timeout=10, follow_redirects=False) as session:
        session.cookies.set("orch_session", token, domain="127.0.0.1", path="/ui")
        paid = session.get(f"/ui/runs/{run_id}/tasks/payment")
        page = session.get(f"/ui/runs/{run_id}/tasks/release")
        forged = session.post(f"/ui/runs/{run_id}/tasks/release/approve", data={"data": "{}"})
        bad = session.post(f"/ui/runs/{run_id}/tasks/release/approve", data={"csrf": csrf_token(token), "data": "{x"})
        done = session.post(f"/ui/runs/{run_id}/tasks/release/approve",
                            data={"csrf": csrf_token(token), "data": '{"note": "from the UI"}'})

    assert "a <code>payment.received</code> event" in paid.text and "resumed by" in paid.text
    assert 'id="approve"' in page.text and "s-waiting" in page.text
    assert forged.status_code == 403 and bad.status_code == 422
    assert done.status_code == 303 and done.headers["location"].endswith("/tasks/release?steered=approve")
    run = finished(stack, run_id)
    assert next(t for t in run["tasks"] if t["node"] == "ship")["result"] == "parcel-F-9 shipped: paid 5 USD (from the UI)"
    assert run["steering"][-1]["by"] == "ui-approver"
