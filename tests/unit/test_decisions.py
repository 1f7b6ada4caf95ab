"""③ The engine's decisions per event: which rules matched (and their runs), why the others did not, bounded,
and read back from untrusted bytes. Pure: no Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.cli.wiring import load_project
from orchestrator.engine.plan import plan_event
from orchestrator.events import decisions
from orchestrator.events.decisions import Decision, EntryIdError
from orchestrator.events.envelope import event_from_mapping
from orchestrator.jsonutil import dumps, loads
from orchestrator.workflows.runs import derive_run_id

from ..projects import make_project

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
RULES = """\
    rules:
      - {name: paid, type: user.*, match: {data.plan: [pro, team]}, workflow: flow, params: {n: "{{ data.n }}"}}
      - {name: switched-off, type: user.signup, enabled: false, workflow: flow}
      - {name: elsewhere, type: user.signup, source: /other, workflow: flow}
      - {name: broken, type: user.signup, workflow: flow, params: {n: "{{ data.missing.value }}"}}
      - {name: every, type: user.signup, workflow: flow, params: {n: "{{ data.n }}"}}
      - {name: orders, type: order.created, workflow: flow}
"""
FLOWS = {"decided_flows": """\
    from orchestrator import task, workflow

    @task
    def decided(n: int = 0) -> int:
        return n

    @workflow
    def flow(n: int = 0):
        decided(n)
    """}


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> list[Decision]:
    project = load_project(make_project(tmp_path_factory.mktemp("decisions"), rules=RULES, workflows=FLOWS))
    signup = event_from_mapping({"specversion": "1.0", "id": "u-1", "source": "/accounts", "type": "user.signup",
                                 "data": {"plan": "free", "n": 2}})
    requests, outcomes = plan_event(project, signup)
    return decisions.planned(outcomes, requests)


def test_matched_rules_name_their_runs_and_the_others_say_why_not(planned: list[Decision]) -> None:
    run = {name: derive_run_id(name, "/accounts", "u-1") for name in ("broken", "every")}
    assert [d.to_dict() for d in planned] == [
        {"rule": "paid", "outcome": "not_matched", "reason": "data.plan is 'free' (expected one of 'pro', 'team')",
         "stopped_by": "match", "path": "data.plan", "seen": "free", "expected": ["pro", "team"]},
        {"rule": "switched-off", "outcome": "not_matched", "reason": "the rule is disabled", "stopped_by": "disabled"},
        {"rule": "broken", "outcome": "error", "run": run["broken"],
         "reason": "rule broken: params.n: 'dict object' has no attribute 'missing'"},
        {"rule": "every", "outcome": "matched", "run": run["every"]},
    ], "a rule stopped by its source glob is left out, like rules of other types"


def test_runs_held_back_by_the_batch_say_so(planned: list[Decision]) -> None:
    every = next(d for d in planned if d.rule == "every")
    broken = next(d for d in planned if d.rule == "broken")

    held = decisions.held_back(planned, {every.run or "": ("queued", "workflow flow is at its concurrency limit (1)"),
                                         broken.run or "": ("skipped", "never applies to an error")})

    assert [(d.rule, d.outcome, d.reason) for d in held if d.rule in ("every", "broken")] == [
        ("broken", "error", broken.reason), ("every", "queued", "workflow flow is at its concurrency limit (1)")]


def test_a_record_is_bounded() -> None:
    many = [Decision(f"rule-{i}", "not_matched", reason="x" * 1000) for i in range(decisions.MAX_RULES + 7)]

    record = loads(decisions.encode(many, event={"id": "e", "source": "/s", "type": "t"}, depth=2, at=NOW))

    assert len(record["rules"]) == decisions.MAX_RULES and record["omitted"] == 7
    assert {len(r["reason"]) for r in record["rules"]} == {decisions.REASON_MAX_CHARS}
    assert (record["depth"], record["decided_at"], record["event"]["id"]) == (2, "2026-05-01T12:00:00Z", "e")


@pytest.mark.parametrize("raw", [b"", b"[", b"[]", b'{"rules": 3}', b'"text"', dumps({"rules": None})])
def test_a_record_that_is_not_one_reads_as_none(raw: bytes) -> None:
    assert decisions.read_record(raw) is None


def test_a_stored_record_is_checked_rule_by_rule() -> None:
    raw = dumps({"rules": [{"rule": "a", "outcome": "matched", "run": "r"}, {"rule": "b", "outcome": "exploded"},
                           {"rule": 3, "outcome": "matched"}, "nonsense", {"rule": "c", "outcome": "cut", "run": 5}],
                 "depth": -4, "omitted": True, "decided_at": 12})

    assert decisions.read_record(raw) == {"rules": [{"rule": "a", "outcome": "matched", "run": "r"}], "depth": 0,
                                          "omitted": 0, "decided_at": None}


@pytest.mark.parametrize("entry_id", ["", "abc", "1-", "-1", "1-0 ", "1-0-0", "1" * 20 + "-0", "*"])
def test_only_stream_entry_ids_are_accepted(entry_id: str) -> None:
    with pytest.raises(EntryIdError, match="is not a stream entry id"):
        decisions.check_entry_id(entry_id)
    assert decisions.check_entry_id("1717000000000-12") == "1717000000000-12"
