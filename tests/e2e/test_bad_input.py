"""Bad input gets its specific error, and nothing already accepted is lost."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from orchestrator.jsonutil import loads
from orchestrator.workflows.runs import derive_run_id

from ..helpers import wait_for
from ..projects import copy_examples
from .conftest import Stack, orch, orch_env

pytestmark = pytest.mark.e2e

CE = {"content-type": "application/cloudevents+json"}


def _order_event(event_id: str) -> dict[str, object]:
    return {"specversion": "1.0", "id": event_id, "source": "/e2e/bad", "type": "order.created",
            "data": {"order_id": event_id, "amount": 1.0, "items": []}}


def _stream_length(stack: Stack) -> int:
    """Events in the stream, but for those the engine announces about runs (they come as runs progress)."""
    client = stack.redis.client()
    try:
        return sum(1 for _, fields in client.xrange("orch:events")
                   if not loads(fields[b"e"])["source"].startswith("/runs/"))
    finally:
        client.close()


@pytest.fixture(scope="module")
def accepted(stack: Stack) -> str:
    """An event accepted before any bad input arrives; it must still be processed afterwards."""
    event_id = "good-" + uuid.uuid4().hex
    assert stack.http().post("/events", content=json.dumps(_order_event(event_id)), headers=CE).status_code == 202
    return event_id


@pytest.mark.parametrize(("body", "headers", "status", "message"), [
    (b'{"specversion": "1.0", "id": ', CE, 400, "malformed JSON in body"),
    (b'{"specversion": "1.0", "id": "x", "type": "t", "data": NaN}', CE, 400, "malformed JSON in body"),
    (b"", CE, 400, "empty body"),
    (json.dumps({"specversion": "1.0", "id": "x", "type": "order.created"}).encode(), CE, 422,
     "missing required attribute 'source'"),
    (json.dumps({"specversion": "0.3", "id": "x", "source": "/s", "type": "t"}).encode(), CE, 422,
     "attribute 'specversion' must be \"1.0\""),
    (json.dumps({"specversion": "1.0", "id": "x", "source": "/s", "type": "t", "time": "yesterday"}).encode(), CE,
     422, "attribute 'time'"),
    (json.dumps({"specversion": "1.0", "id": "x", "source": "/s", "type": "t", "Bad-Name": 1}).encode(), CE, 422,
     "'Bad-Name' is not a valid attribute name"),
    (json.dumps([{"specversion": "1.0", "id": "a", "source": "/s", "type": "t"}, {"id": "b"}]).encode(),
     {"content-type": "application/cloudevents-batch+json"}, 422, "events[1]"),
    (json.dumps({"not": "a batch"}).encode(), {"content-type": "application/cloudevents-batch+json"}, 400,
     "a batch must be a JSON array"),
    (b"hello", {"content-type": "text/plain"}, 415, "unsupported Content-Type 'text/plain'"),
    (b"{}", {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "x", "ce-type": "t"}, 422,
     "missing required attribute 'source'"),
])
def test_bad_events_get_their_specific_error(stack: Stack, accepted: str, body: bytes, headers: dict[str, str],
                                             status: int, message: str) -> None:
    before = _stream_length(stack)
    response = stack.http().post("/events", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert _stream_length(stack) == before, "nothing of a rejected request is published"


def test_an_oversized_body_is_refused(stack: Stack, accepted: str) -> None:
    before = _stream_length(stack)
    event = _order_event("big")
    event["data"] = {"blob": "x" * (1024 * 1024 + 10)}
    response = stack.http().post("/events", content=json.dumps(event), headers=CE)
    assert response.status_code == 413
    assert "over the limit of 1048576 bytes" in response.json()["error"]

    def chunks() -> object:
        for _ in range(40):
            yield b"x" * 65536

    streamed = stack.http().post("/events", content=chunks(), headers=CE)  # no Content-Length: cut while reading
    assert streamed.status_code == 413
    assert _stream_length(stack) == before


def test_rejections_are_counted(stack: Stack, accepted: str) -> None:
    stack.http().post("/events", content=b"{", headers=CE)
    metrics = stack.http().get("/metrics").text
    line = next(m for m in metrics.splitlines() if m.startswith("orch_events_received_total") and "rejected" in m)
    assert float(line.rsplit(" ", 1)[1]) >= 1


def test_events_accepted_before_the_bad_input_are_still_processed(stack: Stack, accepted: str) -> None:
    run_id = derive_run_id("process-new-orders", "/e2e/bad", accepted)

    def succeeded() -> bool:
        response = stack.http().get(f"/runs/{run_id}")
        return response.status_code == 200 and response.json()["status"] == "succeeded"

    wait_for(succeeded, 30, f"run {run_id} of the event accepted before the bad input")
    assert stack.procs.running["engine"].poll() is None, "the engine survived the bad input"


def test_a_rule_file_with_a_typo_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    project = copy_examples(tmp_path / "project")
    rules = project / "rules" / "orders.yaml"
    rules.write_text(rules.read_text().replace("workflow: process_order", "workflow: proces_order"))
    env = orch_env("redis://127.0.0.1:1/0", project)

    result = orch("validate", env=env, check=False)

    assert result.returncode == 1
    expected = (f"{rules}:5: rules[0].workflow: unknown workflow 'proces_order' (did you mean 'process_order'?)")
    assert expected in result.stderr
    engine = orch("engine", env=env, check=False, timeout=30)
    assert engine.returncode == 1 and expected in engine.stderr, "the engine refuses to start on a broken project"


def test_a_rule_with_an_unknown_field_is_reported(tmp_path: Path) -> None:
    project = copy_examples(tmp_path / "project")
    rules = project / "rules" / "users.yaml"
    rules.write_text(rules.read_text().replace("match:", "matches:"))
    result = orch("validate", "--json", env=orch_env(None, project), check=False)
    assert result.returncode == 1
    issue = json.loads(result.stdout)["issues"][0]
    assert issue["file"] == str(rules) and issue["line"] == 5 and issue["field"] == "rules[0].matches"
    assert issue["message"].startswith("unknown field (did you mean 'match'?)")


def test_a_bad_pattern_is_reported_by_validate_with_file_line_and_field(tmp_path: Path) -> None:
    project = copy_examples(tmp_path / "project")
    rules = project / "rules" / "users.yaml"
    rules.write_text(rules.read_text().replace("data.plan: [pro, team]", "data.plan: {anything-but: [pro, 1]}"))

    result = orch("validate", "--json", env=orch_env(None, project), check=False)

    assert result.returncode == 1
    (issue,) = json.loads(result.stdout)["issues"]
    assert (issue["file"], issue["line"], issue["field"]) == (str(rules), 6, "rules[0].match.data.plan.anything-but")
    assert issue["message"] == "an anything-but list holds only strings or only numbers, not both"
