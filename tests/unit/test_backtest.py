"""③ A backtest: recorded events through the current rules and through a proposed rule set, compared run by
run (new, gone, changed parameters), per rule with example events; and a proposed rule set loaded from a
directory of its own, checked against the project's workflows. Pure: no Redis."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.wiring import load_project
from orchestrator.engine.backtest import CAVEATS, Backtest, Start, starts, with_rules
from orchestrator.errors import ConfigError
from orchestrator.events.envelope import event_from_mapping
from orchestrator.project import Project, load_rules

from ..backtest_case import (
    EVENTS,
    EXAMPLE_IDS,
    EXPECTED,
    FLOWS,
    PROPOSED,
    RULES,
    SOURCE,
    example_ids,
    summary,
)
from ..projects import make_project


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, Project]:
    root = tmp_path_factory.mktemp("backtest")
    current = load_project(make_project(root / "project", rules=RULES, workflows=FLOWS))
    (root / "proposed").mkdir()
    (root / "proposed" / "rules.yaml").write_text(textwrap.dedent(PROPOSED))
    return current, with_rules(current, load_rules(current, root / "proposed"))


def backtest(current: Project, proposed: Project) -> dict[str, Any]:
    result = Backtest()
    for n, (event_id, type_, data) in enumerate(EVENTS):
        event = event_from_mapping({"specversion": "1.0", "id": event_id, "source": SOURCE, "type": type_,
                                    "data": data})
        result.add(f"{n + 1}-0", event, starts(current, event), starts(proposed, event))
    result.skip("99-0")
    return result.report()


def test_the_difference_is_counted_run_by_run_and_per_rule(sets: tuple[Project, Project]) -> None:
    report = backtest(*sets)

    assert summary(report) == EXPECTED
    assert example_ids(report) == EXAMPLE_IDS
    assert (report["new"], report["gone"], report["changed"]) == (3, 1, 1)
    assert (report["events"], report["undecodable"], report["first_entry"], report["last_entry"]) == (6, 1, "1-0",
                                                                                                       "99-0")
    assert (report["current_runs"], report["proposed_runs"]) == (8, 10)
    assert report["caveats"] == list(CAVEATS) and "before flow control" in CAVEATS[0]


def test_an_example_shows_both_sides_of_a_change(sets: tuple[Project, Project]) -> None:
    orders = next(r for r in backtest(*sets)["rules"] if r["rule"] == "orders")

    assert orders["examples"]["changed"] == [{
        "entry_id": "2-0", "event_id": "o-2", "type": "order.created",
        "current": {"workflow": "ship", "params": {"order_id": 2, "priority": "low"}},
        "proposed": {"workflow": "ship", "params": {"order_id": 2, "priority": "high"}}}]


def test_the_same_rules_make_no_difference(sets: tuple[Project, Project]) -> None:
    current, _ = sets

    report = backtest(current, current)

    assert (report["new"], report["gone"], report["changed"]) == (0, 0, 0)
    assert {rule: counts[:2] for rule, counts in summary(report).items()} == {
        rule: counts[:2] for rule, counts in EXPECTED.items() if counts[0]}


def test_a_failing_render_is_reported_like_the_engine_records_it(sets: tuple[Project, Project]) -> None:
    current, _ = sets
    event = event_from_mapping({"specversion": "1.0", "id": "o-5", "source": SOURCE, "type": "order.created",
                                "data": {"region": "eu"}})

    found = starts(current, event)

    assert found["orders"] == Start("ship", None, "rule orders: params.order_id: 'dict object' has no attribute 'id'")
    assert found["eu-orders"] == Start("audit", {"region": "eu"})


def test_a_proposed_rule_set_is_checked_with_file_line_and_field(sets: tuple[Project, Project],
                                                                 tmp_path: Path) -> None:
    current, _ = sets
    (tmp_path / "bad.yaml").write_text("rules:\n  - {name: x, type: a, workflow: ship}\n"
                                       "  - {name: y, type: a, workflow: nope}\n")

    with pytest.raises(ConfigError) as failed:
        load_rules(current, tmp_path)

    text = str(failed.value)
    assert "bad.yaml:2" in text and "needs parameter 'order_id'" in text
    assert "bad.yaml:3" in text and "rules[1].workflow" in text and "unknown workflow 'nope'" in text
    with pytest.raises(ConfigError, match="rules directory does not exist"):
        load_rules(current, tmp_path / "missing")
