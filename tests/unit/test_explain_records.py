"""③ What a decision record says about a rule that did not fire (the failed path, the value seen and the value
expected), flow-control decisions, how values are bounded, how stored records are read back as untrusted, and
which events are sampled. Pure: no Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.cli.event_cmds import why
from orchestrator.cli.wiring import load_project
from orchestrator.engine.plan import plan_event
from orchestrator.events import decisions
from orchestrator.events.decisions import Decision, flow_decision, sampled, with_flow
from orchestrator.events.envelope import event_from_mapping
from orchestrator.events.summary import ITEMS_MAX, STR_MAX_CHARS, summarize
from orchestrator.jsonutil import check_json, dumps, loads
from orchestrator.rules.match import RuleIndex
from orchestrator.rules.model import MISSING, Rule

from ..projects import make_project

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
EVENT = {"id": "e-1", "source": "/s", "type": "t"}
RULES = """\
    rules:
      - {name: eu-only, type: order.created, match: {data.region: eu}, workflow: flow}
      - {name: vip, type: order.created, match: {data.customer.tier: gold}, workflow: flow}
      - {name: everything, type: order.created, workflow: flow}
"""
FLOWS = {"explain_flows": """\
    from orchestrator import task, workflow

    @task
    def noted() -> None:
        return None

    @workflow
    def flow():
        noted()
    """}


def stored(*items: Decision) -> list[dict[str, Any]]:
    """The decisions as they read back from Redis."""
    record = decisions.read_record(decisions.encode(list(items), event=EVENT, depth=0, at=NOW))
    assert record is not None
    return record["rules"]


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_project(make_project(tmp_path_factory.mktemp("explain"), rules=RULES, workflows=FLOWS))


def order(**data: Any) -> Any:
    return event_from_mapping({"specversion": "1.0", "id": f"o-{sorted(data.items())}", "source": "/shop",
                               "type": "order.created", "data": data})


def test_a_miss_names_the_path_the_value_seen_and_the_value_expected(orders: Any) -> None:
    requests, outcomes = plan_event(orders, order(region="us", customer={"tier": "gold"}))

    assert [d.to_dict() for d in decisions.planned(outcomes, requests)][:1] == [
        {"rule": "eu-only", "outcome": "not_matched", "reason": "data.region is 'us' (expected 'eu')",
         "stopped_by": "match", "path": "data.region", "seen": "us", "expected": "eu"}]


def test_a_missing_field_is_marked_missing_not_null(orders: Any) -> None:
    requests, outcomes = plan_event(orders, order(region="eu", customer=None))
    vip = next(d for d in decisions.planned(outcomes, requests) if d.rule == "vip")

    assert vip.seen is MISSING
    assert stored(vip) == [{"rule": "vip", "outcome": "not_matched", "stopped_by": "match",
                            "reason": "data.customer.tier is missing (expected 'gold')", "path": "data.customer.tier",
                            "missing": True, "expected": "gold"}]
    assert why(stored(vip)[0]) == '[match] data.customer.tier: missing, expected "gold"'
    null = Decision("r", "not_matched", stopped_by="match", path="data.x", seen=None, expected=1)
    assert stored(null)[0]["seen"] is None and "missing" not in stored(null)[0]


def test_values_seen_and_expected_are_cut_to_a_small_json_summary() -> None:
    huge = {"text": "x" * 10_000, "items": list(range(1000)), "deep": {"a": {"b": {"c": 1}}}, "n": 2**80,
            "nan": float("nan"), "more": 1, "and": 2}
    decision = Decision("r", "not_matched", stopped_by="match", path="data." + "p" * 500, seen=huge,
                        expected=[b"bytes", "y" * 500])

    out = decision.to_dict()

    check_json(out)
    assert len(dumps(out)) < 1200
    assert out["seen"] == {"text": "x" * (STR_MAX_CHARS - 1) + "…", "items": [0, 1, 2, 3, 4, "… 995 more"],
                           "deep": {"a": "<object of 1 keys>"}, "n": str(2**80), "nan": "nan",
                           "…": "2 more keys"}
    assert out["expected"] == ["b'bytes'", "y" * (STR_MAX_CHARS - 1) + "…"]
    assert len(out["path"]) == decisions.PATH_MAX_CHARS
    assert summarize(list(range(ITEMS_MAX + 1))) == list(range(ITEMS_MAX + 1)), "a small value is kept whole"
    assert summarize(out["seen"]) == out["seen"], "a summary read back is its own summary"


def test_a_flow_decision_carries_a_bounded_detail_and_takes_the_matched_rules_place() -> None:
    matched = [Decision("a", "matched", "run-a"), Decision("b", "matched", "run-b"), Decision("c", "not_matched")]
    flow = flow_decision("b", "debounced", run="run-0", reason="merged into the pending run of key c-42",
                         detail={"key": "c-42", "until": "2026-05-01T12:00:05Z", "events": list(range(50))})

    decided = with_flow(matched, {"b": flow, "z": flow_decision("z", "rate_limited", detail={"key": "k"})})

    assert [(d.rule, d.outcome) for d in decided] == [("a", "matched"), ("b", "debounced"), ("c", "not_matched"),
                                                     ("z", "rate_limited")]
    assert stored(*decided)[1] == {"rule": "b", "outcome": "debounced", "run": "run-0",
                                   "reason": "merged into the pending run of key c-42",
                                   "detail": {"key": "c-42", "until": "2026-05-01T12:00:05Z",
                                              "events": [0, 1, 2, 3, 4, "… 45 more"]}}
    assert why(stored(*decided)[1]) == ('merged into the pending run of key c-42; key="c-42" '
                                        'until="2026-05-01T12:00:05Z" events=[0,1,2,3,4,"… 45 more"]')
    for outcome in decisions.FLOW_OUTCOMES:
        assert stored(flow_decision("r", outcome))[0]["outcome"] == outcome
    with pytest.raises(ValueError, match="not a flow-control outcome"):
        flow_decision("r", "matched")


@pytest.mark.parametrize("bad", [
    {"stopped_by": "Robert'); DROP"}, {"stopped_by": 3}, {"path": ["data"]}, {"missing": "yes"},
    {"detail": ["key", "k"]}, {"detail": "key=k"}, {"reason": {"x": 1}},
])
def test_a_stored_decision_with_a_field_of_the_wrong_shape_is_dropped(bad: dict[str, Any]) -> None:
    good = {"rule": "ok", "outcome": "not_matched", "stopped_by": "match", "path": "data.x", "seen": 1,
            "expected": 2}
    raw = dumps({"rules": [good, {**good, "rule": "bad", **bad}], "depth": 0, "omitted": 0})

    record = decisions.read_record(raw)

    assert record is not None and [d["rule"] for d in record["rules"]] == ["ok"]


def test_a_stored_record_is_summarized_again_on_reading() -> None:
    raw = dumps({"rules": [{"rule": "r" * 100_000, "outcome": "throttled", "path": "data.x", "seen": "s" * 5000,
                            "run": "u" * 100_000, "expected": list(range(100)),
                            "detail": {f"k{i}": "v" * 500 for i in range(100)}}],
                 "decided_at": "2026" * 1000})

    record = decisions.read_record(raw)

    assert record is not None and len(dumps(record)) < 1900
    assert (len(record["rules"][0]["rule"]), len(record["rules"][0]["run"])) == (decisions.RULE_MAX_CHARS,
                                                                                 decisions.RUN_MAX_CHARS)
    (rule,) = record["rules"]
    assert len(rule["seen"]) == STR_MAX_CHARS and rule["expected"][-1] == "… 95 more"
    assert len(rule["detail"]) == ITEMS_MAX + 1 and rule["detail"]["…"] == "95 more keys"


def test_sampling_is_a_pure_function_of_the_events_identity() -> None:
    ids = [f"evt-{n}" for n in range(4000)]
    quarter = {i for i in ids if sampled("/shop", i, 0.25)}

    assert quarter == {i for i in ids if sampled("/shop", i, 0.25)}, "every engine picks the same events"
    assert 900 < len(quarter) < 1100
    assert quarter <= {i for i in ids if sampled("/shop", i, 0.5)}, "a larger fraction keeps the smaller's events"
    assert all(sampled("/shop", i, 1.0) for i in ids) and not any(sampled("/shop", i, 0.0) for i in ids)
    assert {i for i in ids if sampled("/other", i, 0.25)} != quarter, "the source is part of the identity"


def test_an_event_outside_the_sample_is_matched_without_explaining_the_misses(orders: Any) -> None:
    event = order(region="us", customer={"tier": "gold"})
    assert sampled(event.source, event.id, 0.0) is False

    full_requests, full = plan_event(orders, event, sample=1.0)
    fast_requests, fast = plan_event(orders, event, sample=0.0)

    assert [(r.rule, label) for r, label in full] == [("eu-only", "not_matched"), ("vip", "matched"),
                                                      ("everything", "matched")]
    assert [(r.rule, label) for r, label in fast] == [("vip", "matched"), ("everything", "matched")]
    assert fast_requests == full_requests
    assert [d.outcome for d in decisions.planned(fast, fast_requests)] == ["matched", "matched"]


class FastIndex(RuleIndex):
    """An index with the fast path the pattern language adds (`matching`: full matches only)."""

    asked: list[str]

    def matching(self, event: Any) -> list[Rule]:
        self.asked = [*getattr(self, "asked", []), event.id]
        return [rule for rule, result in self.evaluate(event) if result.outcome.value == "full"]

    def evaluate(self, event: Any) -> Any:
        if getattr(self, "explaining_forbidden", False):
            raise AssertionError("evaluate called for an event outside the sample")
        return super().evaluate(event)


def test_the_fast_path_of_the_index_is_used_when_it_has_one(orders: Any) -> None:
    index = FastIndex(orders.rules)
    project = type(orders)(orders.root, rules=orders.rules, workflows=orders.workflows, index=index)
    event = order(region="eu", customer={"tier": "gold"})

    requests, outcomes = plan_event(project, event, sample=0.0)

    assert index.asked == [event.id]
    assert [r.rule for r in requests] == ["eu-only", "vip", "everything"]
    assert [label for _, label in outcomes] == ["matched"] * 3
    assert loads(dumps([d.to_dict() for d in decisions.planned(outcomes, requests)]))[0]["outcome"] == "matched"


def test_the_sample_is_a_setting_between_0_and_1(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from orchestrator.settings import Settings

    assert Settings().explain_sample == 1.0, "every event is explained by default"
    monkeypatch.setenv("ORCH_EXPLAIN_SAMPLE", "0.05")
    assert Settings().explain_sample == 0.05
    monkeypatch.setenv("ORCH_EXPLAIN_SAMPLE", "1.5")
    with pytest.raises(ValidationError, match="explain_sample"):
        Settings()


def test_a_run_held_back_by_the_batch_may_say_how_in_a_detail() -> None:
    decided = [Decision("a", "matched", "run-a"), Decision("b", "matched", "run-b")]

    held = decisions.held_back(decided, {"run-a": ("waiting", "waits for a slot of key c-42", {"key": "c-42",
                                                                                                "limit": 1}),
                                         "run-b": ("queued", "workflow w is at its concurrency limit (1)")})

    assert stored(*held) == [
        {"rule": "a", "outcome": "waiting", "run": "run-a", "reason": "waits for a slot of key c-42",
         "detail": {"key": "c-42", "limit": 1}},
        {"rule": "b", "outcome": "queued", "run": "run-b", "reason": "workflow w is at its concurrency limit (1)"}]
