"""Why a rule fired or not, where users read it: `orch events show`, GET /events/{entry_id} and the event page of
the web UI, with real `orch api` and `orch engine` processes. The engine records a failed condition's path,
the value seen (or missing) and the value expected, and a render error's message; a flow-control decision
(written as the flow controls write theirs: events.decisions.flow_decision) shows its outcome and detail."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.events.decisions import encode, flow_decision
from orchestrator.jsonutil import loads
from orchestrator.state.keys import Keys

from ..helpers import wait_for
from ..projects import make_project
from .conftest import Stack, create_token, orch, orch_json, start_stack, stop_stack

pytestmark = pytest.mark.e2e

RULES = """
    rules:
      - {name: eu-orders, type: order.created, match: {data.region: eu}, workflow: note}
      - {name: gold, type: order.created, match: {data.customer.tier: gold}, workflow: note}
      - {name: typo, type: order.created, workflow: note, params: {n: "{{ data.quantity.value }}"}}
      - {name: everything, type: order.created, workflow: note}
      - {name: per-customer, type: order.paid, workflow: note}
"""
FLOWS = {"shown": """
    from orchestrator import task, workflow

    @task(queue="nobody")
    def noted(n: int = 0) -> int:
        return n

    @workflow
    def note(n: int = 0):
        noted(n)
"""}
KEYS = Keys()


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str, str]]:
    """A stack whose engine decided one order (entry id), and one paid order with a flow decision recorded."""
    root = tmp_path_factory.mktemp("explain")
    (root / "logs").mkdir()
    running = start_stack(root / "logs", project=make_project(root / "project", rules=RULES, workflows=FLOWS),
                          workers=0)
    try:
        orch("emit", "order.created", "--data", '{"region": "us", "customer": {"name": "Ada"}}', "--source",
             "/shop", "--id", "o-1", env=running.env)
        orch("emit", "order.paid", "--data", '{"customer": "c-42"}', "--source", "/shop", "--id", "p-1",
             env=running.env)
        client = running.redis.client()
        entries = {loads(fields[b"e"])["id"]: entry.decode() for entry, fields in client.xrange(KEYS.events)}
        wait_for(lambda: client.exists(KEYS.decisions(entries["o-1"]), KEYS.decisions(entries["p-1"])) == 2, 30,
                 "the engine to record its decisions")
        debounced = flow_decision("per-customer", "debounced", run="run-of-c-42",
                                  reason="merged into the pending run of its key",
                                  detail={"key": "c-42", "until": "2026-05-01T12:00:05Z"})
        client.set(KEYS.decisions(entries["p-1"]), encode([debounced], event={"id": "p-1", "source": "/shop",
                                                                              "type": "order.paid"},
                                                          depth=0, at=datetime.now(UTC)))
        client.close()
        yield running, entries["o-1"], entries["p-1"]
    finally:
        stop_stack(running)


def test_orch_events_show_says_which_value_failed_and_what_was_expected(shown: tuple[Stack, str, str]) -> None:
    stack, order, paid = shown

    text = orch("events", "show", order, env=stack.env).stdout
    found: Any = orch_json("events", "show", order, env=stack.env)
    flow = orch("events", "show", paid, env=stack.env).stdout

    rows = {line.split()[0]: line for line in text.splitlines() if line.split() and line.split()[0] in (
        "eu-orders", "gold", "typo", "everything")}
    assert "not_matched" in rows["eu-orders"] and '[match] data.region: seen "us", expected "eu"' in rows["eu-orders"]
    assert '[match] data.customer.tier: missing, expected "gold"' in rows["gold"]
    assert "error" in rows["typo"] and "has no attribute 'quantity'" in rows["typo"]
    assert "matched" in rows["everything"]
    assert found["decisions"]["rules"][0] == {
        "rule": "eu-orders", "outcome": "not_matched", "reason": "data.region is 'us' (expected 'eu')",
        "stopped_by": "match", "path": "data.region", "seen": "us", "expected": "eu"}
    assert "debounced" in flow and 'merged into the pending run of its key; key="c-42" ' \
                                   'until="2026-05-01T12:00:05Z"' in flow
    print(text, flow)  # the example output of the report


def test_the_api_and_the_ui_show_the_same(shown: tuple[Stack, str, str], tmp_path: Path) -> None:
    stack, order, paid = shown
    token = create_token(stack.env, "explain-reader", "events:read")

    api = httpx.get(f"{stack.api}/events/{paid}", headers={"authorization": f"Bearer {token}"}, timeout=10)
    with httpx.Client(base_url=stack.api, timeout=10) as session:
        session.cookies.set("orch_session", token, domain="127.0.0.1", path="/ui")
        order_page, paid_page = session.get(f"/ui/events/{order}"), session.get(f"/ui/events/{paid}")

    assert api.status_code == 200 and api.json()["decisions"]["rules"] == [
        {"rule": "per-customer", "outcome": "debounced", "run": "run-of-c-42",
         "reason": "merged into the pending run of its key", "detail": {"key": "c-42", "until": "2026-05-01T12:00:05Z"}}]
    assert order_page.status_code == 200 and paid_page.status_code == 200
    html = order_page.text
    assert '<code>data.region</code>: seen <code>"us"</code>, expected <code>"eu"</code>' in html
    assert '<code>data.customer.tier</code>: <em>missing</em>, expected <code>"gold"</code>' in html
    assert 'data-outcome="debounced"' in paid_page.text and '<code>key="c-42"</code>' in paid_page.text
