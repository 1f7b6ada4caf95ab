"""Run lifecycle events end to end, with real `orch api`, `orch engine` and `orch worker` processes: the
chaining example (`ingest` succeeds -> `report` runs), `orch events show` and GET /events/{entry_id}
explaining which rule started which run, and a self-triggering rule cut at ORCH_CHAIN_MAX_DEPTH with its
record and its metric."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from ..helpers import wait_for
from ..projects import copy_examples
from .conftest import Stack, orch, orch_json, start_stack, stop_stack

pytestmark = pytest.mark.e2e

LOOP_RULES = """
    rules:
      - {name: kick-loop, type: loop.start, workflow: again}
      - {name: again-and-again, type: orch.run.succeeded, source: /runs/again, workflow: again}
"""
LOOP_FLOW = """
    from orchestrator import task, workflow

    @task
    def once() -> str:
        return "again"

    @workflow
    def again():
        once()
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    project = copy_examples(tmp_path_factory.mktemp("lifecycle") / "project")
    (project / "rules" / "loop.yaml").write_text(textwrap.dedent(LOOP_RULES))
    (project / "workflows" / "loop.py").write_text(textwrap.dedent(LOOP_FLOW))
    running = start_stack(tmp_path_factory.mktemp("logs"), project, ORCH_CHAIN_MAX_DEPTH="2")
    yield running
    stop_stack(running)


def runs(stack: Stack, workflow: str) -> list[dict[str, Any]]:
    return list(orch_json("runs", "list", "--workflow", workflow, env=stack.env))


def test_ingest_succeeding_runs_report_and_the_event_says_which_rule_started_it(stack: Stack) -> None:
    orch("emit", "dataset.uploaded", "--source", "/e2e/uploads", "--data", '{"dataset": "d-1", "rows": 2}',
         env=stack.env)
    (report,) = wait_for(lambda: [r for r in runs(stack, "report") if r["status"] == "succeeded"], 30,
                         "the report run to succeed")
    (ingest,) = runs(stack, "ingest")
    assert report["params"]["ingest_run"] == ingest["id"] and report["params"]["dataset"] == "d-1"

    announced = orch_json("events", "list", "--type", "orch.run.succeeded", "--limit", "100", env=stack.env)
    (ended,) = [e for e in announced if e["subject"] == ingest["id"]]
    assert ended["source"] == "/runs/ingest" and ended["orchrun"] == ingest["id"] and ended["orchdepth"] == 1

    shown = orch_json("events", "show", ended["entry_id"], env=stack.env)
    assert shown["state"] == "processed" and shown["event"]["id"] == ended["id"]
    assert shown["decisions"]["rules"] == [{"rule": "report-after-ingest", "outcome": "matched", "run": report["id"]}]
    assert stack.http().get(f"/events/{ended['entry_id']}").json() == shown

    human = orch("events", "show", ended["entry_id"], env=stack.env).stdout
    assert "report-after-ingest" in human and "matched" in human and report["id"] in human


def test_events_show_explains_a_rule_that_did_not_match(stack: Stack) -> None:
    emitted = orch_json("emit", "user.signup", "--source", "/e2e/users", "--data",
                        '{"email": "a@example.com", "plan": "free"}', env=stack.env)

    shown = wait_for(lambda: (found := orch_json("events", "show", emitted["entry_id"], env=stack.env))["decisions"]
                     and found, 30, "the engine to decide on the event")

    assert shown["decisions"]["rules"] == [{"rule": "welcome-paid-users", "outcome": "not_matched",
                                            "reason": "data.plan is 'free' (expected one of 'pro', 'team')",
                                            "stopped_by": "match", "path": "data.plan", "seen": "free",
                                            "expected": ["pro", "team"]}]
    assert '[match] data.plan: seen "free", expected ["pro","team"]' in orch(
        "events", "show", emitted["entry_id"], env=stack.env).stdout
    assert stack.http().get("/events/1-0").status_code == 404
    bad = stack.http().get("/events/not-an-id")
    assert bad.status_code == 422 and bad.json()["field"] == "entry_id"
    refused = orch("events", "show", "not-an-id", env=stack.env, check=False)
    assert refused.returncode == 2 and "is not a stream entry id" in refused.stderr


def test_a_rule_that_retriggers_its_own_workflow_is_cut_at_the_limit(stack: Stack) -> None:
    orch("emit", "loop.start", "--source", "/e2e/loop", env=stack.env)

    (cut,) = wait_for(lambda: [r for r in runs(stack, "again") if r["status"] == "failed"], 30, "the chain to be cut")

    assert cut["error"] == "rule again-and-again: chain depth 3 over limit 2" and cut["depth"] == 3
    assert sorted(r["status"] for r in runs(stack, "again")) == ["failed"] + ["succeeded"] * 3
    metrics = stack.http().get("/metrics").text
    assert 'orch_chains_cut_total{rule="again-and-again"} 1.0' in metrics
    for action in ("retry", "rerun"):  # it would run with no parameters, around the cut
        refused = orch("runs", action, cut["id"], env=stack.env, check=False)
        assert refused.returncode != 0 and "never started" in refused.stderr, refused.stderr
