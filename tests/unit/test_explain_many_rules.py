"""③ Explaining an event against many rules: the engine takes the full matches from the index's fast path and
explains at most MAX_RULES of the rules that did not match (the near misses first), and a decision record
never drops the decision that started a run to make room for rules that did not match. Pure: no Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.cli.wiring import load_project
from orchestrator.engine.plan import plan_event
from orchestrator.engine.trial import try_event
from orchestrator.events import decisions
from orchestrator.events.decisions import MAX_RULES, Decision
from orchestrator.events.envelope import event_from_mapping
from orchestrator.rules.match import RuleIndex

from ..projects import make_project

RULE_COUNT = 130
MATCHING = 100          # the one rule of c-100 with a low enough threshold
NEAR_MISS = 120         # the customer is this rule's, the amount is not
FLOWS = {"many_flows": """\
    from orchestrator import task, workflow

    @task
    def noted() -> None:
        return None

    @workflow
    def flow():
        noted()
    """}


def _rules() -> str:
    lines = ["rules:"]
    for n in range(RULE_COUNT):
        customer = "c-100" if n in (MATCHING, NEAR_MISS) else f"c-{n}"
        threshold = 10 if n == MATCHING else 500
        lines.append(f"  - {{name: r{n}, type: order.created, workflow: flow, "
                     f"match: {{data.customer: {customer}, data.amount: {{numeric: ['>', {threshold}]}}}}}}")
    return "\n".join(lines) + "\n"


class NoEvaluate(RuleIndex):
    """An index that refuses the slow path that explains every rule."""

    def evaluate(self, event: Any) -> Any:
        raise AssertionError("evaluate() explains every rule listening to the type")


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Any:
    project = load_project(make_project(tmp_path_factory.mktemp("many"), rules=_rules(), workflows=FLOWS))
    return type(project)(project.root, rules=project.rules, workflows=project.workflows,
                         index=NoEvaluate(project.rules))


def order(**data: Any) -> Any:
    return event_from_mapping({"specversion": "1.0", "id": "o-1", "source": "/shop", "type": "order.created",
                               "data": data})


def test_a_sampled_event_takes_its_matches_from_the_index_and_explains_at_most_max_rules_others(many: Any) -> None:
    requests, outcomes = plan_event(many, order(customer="c-100", amount=50), sample=1.0)

    assert [r.rule for r in requests] == [f"r{MATCHING}"]
    missed = [result for result, label in outcomes if label == "not_matched"]
    assert len(missed) == MAX_RULES
    assert outcomes.omitted == RULE_COUNT - 1 - MAX_RULES
    near = next(result for result in missed if result.rule == f"r{NEAR_MISS}")
    assert (near.path, near.seen) == ("data.amount", 50), "the near miss is explained, though loaded last"
    names = [result.rule for result, _ in outcomes]
    assert names == sorted(names, key=lambda name: int(name[1:])), "in load order"


def test_the_runs_planned_are_the_same_sampled_or_not(many: Any) -> None:
    for data in ({"customer": "c-100", "amount": 50}, {"customer": "c-100", "amount": 900}, {"customer": "c-7"},
                 {"customer": "c-3", "amount": 600}):
        sampled_requests, _ = plan_event(many, order(**data), sample=1.0)
        fast_requests, _ = plan_event(many, order(**data), sample=0.0)
        assert sampled_requests == fast_requests
    both = [r.rule for r in plan_event(many, order(customer="c-100", amount=900), sample=1.0)[0]]
    assert both == [f"r{MATCHING}", f"r{NEAR_MISS}"]


def test_a_record_counts_the_rules_left_unexplained_as_omitted(many: Any) -> None:
    requests, outcomes = plan_event(many, order(customer="c-100", amount=50), sample=1.0)
    record = decisions.read_record(decisions.encode(decisions.planned(outcomes, requests), at=datetime.now(UTC),
                                                    event={"id": "o-1", "source": "/shop", "type": "t"}, depth=0,
                                                    omitted=outcomes.omitted))

    assert record is not None
    assert {"rule": f"r{MATCHING}", "outcome": "matched", "run": requests[0].run_id} in record["rules"]
    assert len(record["rules"]) + record["omitted"] == RULE_COUNT


def test_orch_rules_test_still_explains_every_rule(many: Any) -> None:
    plain = type(many)(many.root, rules=many.rules, workflows=many.workflows, index=RuleIndex(many.rules))
    report = try_event(plain, order(customer="c-5", amount=1))

    assert len(report) == RULE_COUNT
    assert all(item["reason"] for item in report)



def test_a_record_keeps_the_matched_decision_whatever_precedes_it() -> None:
    """The reviewer's case: 60 rules that did not match, loaded before the one that started the run."""
    missed = [Decision(f"miss-{n}", "not_matched", reason="no", stopped_by="match") for n in range(60)]
    started = [Decision("hit", "matched", "run-1"), Decision("slow", "throttled", "run-2")]
    record = decisions.read_record(decisions.encode([*missed, *started], event={"id": "e", "source": "/s", "type": "t"},
                                                    depth=0, at=datetime.now(UTC), omitted=3))

    assert record is not None
    kept = record["rules"]
    assert [d["rule"] for d in kept[-2:]] == ["hit", "slow"], "every decision that is not a miss is kept"
    assert len(kept) == MAX_RULES
    assert [d["rule"] for d in kept[:-2]] == [f"miss-{n}" for n in range(MAX_RULES - 2)], "misses cut in order"
    assert record["omitted"] == 3 + 60 - (MAX_RULES - 2)


def test_a_record_of_many_started_runs_reads_back_whole_up_to_its_ceiling() -> None:
    started = [Decision(f"hit-{n}", "matched", f"run-{n}") for n in range(decisions.MAX_RECORDED + 20)]
    record = decisions.read_record(decisions.encode(started, event={"id": "e", "source": "/s", "type": "t"}, depth=0,
                                                    at=datetime.now(UTC)))

    assert record is not None
    assert [d["rule"] for d in record["rules"]] == [f"hit-{n}" for n in range(decisions.MAX_RECORDED)]
    assert record["omitted"] == 20
