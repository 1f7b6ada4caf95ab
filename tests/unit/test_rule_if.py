"""A rule's `if:` (rules/ifexpr.py): tested after the pattern, over `event` and `data`; never crashes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.catalog import build_catalog
from orchestrator.events.envelope import Event
from orchestrator.project import load_project
from orchestrator.rules.match import RuleIndex, match
from orchestrator.rules.model import Match, Rule, RuleConfig

from ..projects import make_project


def _rule(condition: str, **extra: Any) -> Rule:
    return Rule.from_config(RuleConfig.model_validate(
        {"name": "r", "type": "order.created", "workflow": "w", "if": condition, **extra}))


def _event(data: Any, source: str = "/shop/eu") -> Event:
    return Event.new("order.created", data, source=source)


def test_a_true_expression_matches_and_a_false_one_says_so() -> None:
    rule = _rule("data.amount >= 100.0 && event.source.startsWith('/shop/')")
    assert match(rule, _event({"amount": 150})).outcome is Match.FULL
    result = match(rule, _event({"amount": 50}))
    assert (result.outcome, result.stopped_by) == (Match.PARTIAL, "if")
    assert result.reason == "if: \"data.amount >= 100.0 && event.source.startsWith('/shop/')\" is false"


@pytest.mark.parametrize(("data", "message"), [
    ({}, "no such key: 'amount'"),
    ({"amount": "lots"}, "No such overload"),
    (None, "if: 'data.amount > 1.0'"),
])
def test_an_evaluation_error_means_no_match_with_the_error(data: Any, message: str) -> None:
    result = match(_rule("data.amount > 1.0"), _event(data))
    assert (result.outcome, result.stopped_by) == (Match.PARTIAL, "if")
    assert result.reason is not None and message in result.reason


def test_a_value_that_is_not_a_boolean_does_not_match() -> None:
    result = match(_rule("data.amount + 1"), _event({"amount": 1}))
    assert result.outcome is Match.PARTIAL and result.reason == "if: 'data.amount + 1' gave 2, not a boolean"


def test_the_field_conditions_are_tested_first() -> None:
    rule = _rule("data.missing == 1", match={"data.channel": "web"})
    result = match(rule, _event({"channel": "app"}))
    assert result.stopped_by == "match" and (result.reason or "").startswith("data.channel")


def test_an_expression_over_a_list_and_the_cost_limit_through_the_index() -> None:
    rule = _rule("data.items.exists(i, i.startsWith('gift-'))")
    index = RuleIndex([rule])
    assert index.evaluate(_event({"items": ["pen", "gift-card"]}))[0][1].outcome is Match.FULL
    nested = _rule("data.items.map(i, data.items.map(j, j)).size() > 0")
    result = RuleIndex([nested]).evaluate(_event({"items": list(range(2000))}))[0][1]
    assert result.outcome is Match.PARTIAL and "steps (limit 100,000" in (result.reason or "")


def test_rules_of_one_event_share_its_conversion_and_see_the_right_event() -> None:
    rules = [_rule("data.amount > 10.0"), Rule.from_config(RuleConfig.model_validate(
        {"name": "s", "type": "order.created", "workflow": "w", "if": "data.amount < 10.0"}))]
    index = RuleIndex(rules)
    assert [r.outcome for _, r in index.evaluate(_event({"amount": 20}))] == [Match.FULL, Match.PARTIAL]
    assert [r.outcome for _, r in index.evaluate(_event({"amount": 5}))] == [Match.PARTIAL, Match.FULL]


@pytest.mark.parametrize(("condition", "message"), [
    ("data.amount >", "is not a valid CEL expression"),
    ("", "non-empty"),
    ("[1].map(a, [2].map(b, [3].map(c, c)))", "3 deep"),
])
def test_a_bad_expression_is_a_validation_error_on_the_if_field(condition: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RuleConfig.model_validate({"name": "r", "type": "t", "workflow": "w", "if": condition})
    error = caught.value.errors()[0]
    assert error["loc"] == ("if",) and message in error["msg"]


def test_the_catalogue_shows_a_rule_if_with_its_conditions(tmp_path: Path) -> None:
    make_project(tmp_path, rules="""\
        rules:
          - name: big
            type: order.created
            match: {data.channel: web}
            if: data.amount > 100.0
            workflow: handle
        """, workflows={"shop": "from orchestrator import task, workflow\n\n@task\ndef step() -> None: ...\n\n"
                                  "@workflow\ndef handle():\n    step()\n"})

    rules = build_catalog(load_project(tmp_path), datetime(2026, 1, 1, tzinfo=UTC))["rules"]

    assert rules[0]["filter"] == 'data.channel == "web" and if data.amount > 100.0'
