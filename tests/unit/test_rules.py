"""③ Rules: validation of a rule as written, and matching with three outcomes that explain themselves."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.events.envelope import Event
from orchestrator.rules.match import RuleIndex, event_view, match
from orchestrator.rules.model import Match, MatchResult, Rule, RuleConfig
from orchestrator.rules.pattern import PatternError


def make_rule(name: str = "r", type: str | list[str] = "order.created", **fields: Any) -> Rule:
    return Rule.from_config(RuleConfig(name=name, type=type, workflow=fields.pop("workflow", "wf"), **fields))


def make_event(type: str = "order.created", data: Any = None, source: str = "/shop/web", **extra: Any) -> Event:
    return Event.new(type, data, source=source, id="e-1", **extra)


def config_errors(**fields: Any) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        RuleConfig.model_validate(fields)
    return [(e["loc"], e["msg"]) for e in caught.value.errors()]


# -- RuleConfig --------------------------------------------------------------------------------------


def test_a_rule_config_takes_one_type_or_several() -> None:
    assert RuleConfig(name="r", type="a.b", workflow="w").types == ("a.b",)
    assert RuleConfig(name="r", type=["a.b", "c.*"], workflow="w").types == ("a.b", "c.*")


def test_a_rule_name_must_be_a_plain_identifier() -> None:
    ((loc, message),) = config_errors(name="has spaces", type="t", workflow="w")

    assert loc == ("name",)
    assert "should match pattern" in message


@pytest.mark.parametrize("types", [[], ["a", ""]])
def test_a_rule_needs_at_least_one_non_empty_type(types: list[str]) -> None:
    ((loc, message),) = config_errors(name="r", type=types, workflow="w")

    assert loc == ("type",)
    assert message == "Value error, give at least one non-empty event type"


def test_a_match_path_must_be_dotted_field_names() -> None:
    config = RuleConfig(name="r", type="t", workflow="w", match={"data.a b": 1})

    with pytest.raises(PatternError) as caught:
        Rule.from_config(config)

    assert caught.value.parts == ("data.a b",)
    assert "'data.a b' is not a field path like data.order.region" in str(caught.value)


@pytest.mark.parametrize(("expected", "parts", "message"), [
    ({"x": {}}, ("data.a", "x"), "an empty object matches nothing"),
    ([1, [2]], ("data.a", 1), "a list inside a list"),
    ({"numeric": [">", "0"]}, ("data.a", "numeric", 1), "the value of > must be a number, not a string"),
], ids=["empty-object", "nested-list", "numeric-string"])
def test_a_bad_pattern_says_where_and_why(expected: Any, parts: tuple[Any, ...], message: str) -> None:
    config = RuleConfig(name="r", type="t", workflow="w", match={"data.a": expected})

    with pytest.raises(PatternError) as caught:
        Rule.from_config(config)

    assert caught.value.parts == parts and message in caught.value.detail


def test_an_unknown_field_is_rejected() -> None:
    ((loc, message),) = config_errors(name="r", type="t", workflow="w", wokflow="w")

    assert loc == ("wokflow",)
    assert message == "Extra inputs are not permitted"


def test_the_workflow_is_required() -> None:
    ((loc, message),) = config_errors(name="r", type="t")

    assert loc == ("workflow",)
    assert message == "Field required"


def test_from_config_compiles_the_pattern() -> None:
    config = RuleConfig(name="r", type="t", workflow="w", source="/shop/*", enabled=False,
                        match={"data.region": "eu", "data.channel": ["web", "app"]})

    rule = Rule.from_config(config)

    assert rule.pattern.paths() == ["data.region", "data.channel"]
    assert rule.pattern.describe() == 'data.region == "eu" and data.channel in ["web", "app"]'
    assert (rule.name, rule.types, rule.source, rule.workflow, rule.enabled) == ("r", ("t",), "/shop/*", "w", False)


# -- match -------------------------------------------------------------------------------------------


def test_an_event_of_another_type_does_not_match() -> None:
    result = match(make_rule(), make_event("user.signup"))

    assert result == MatchResult("r", Match.NONE)


def test_a_rule_without_conditions_matches_fully() -> None:
    assert match(make_rule(), make_event()) == MatchResult("r", Match.FULL)


def test_a_failed_condition_is_a_partial_match_that_says_why() -> None:
    rule = make_rule(match={"data.region": "eu"})

    result = match(rule, make_event(data={"region": "us"}))

    assert result.outcome is Match.PARTIAL
    assert result.reason == "data.region is 'us' (expected 'eu')"


def test_a_missing_field_is_a_partial_match() -> None:
    rule = make_rule(match={"data.customer.tier": "gold"})

    result = match(rule, make_event(data={"customer": {}}))

    assert result.outcome is Match.PARTIAL
    assert result.reason == "data.customer.tier is missing (expected 'gold')"


def test_a_missing_data_is_a_missing_field() -> None:
    result = match(make_rule(match={"data.region": "eu"}), make_event(data=None))

    assert result.reason == "data.region is missing (expected 'eu')"


def test_all_conditions_must_hold() -> None:
    rule = make_rule(match={"data.region": "eu", "data.total": 10})

    assert match(rule, make_event(data={"region": "eu", "total": 10})).outcome is Match.FULL
    assert match(rule, make_event(data={"region": "eu", "total": 11})).reason == "data.total is 11 (expected 10)"


def test_a_list_of_values_means_any_of_them() -> None:
    rule = make_rule(match={"data.channel": ["web", "app"]})

    assert match(rule, make_event(data={"channel": "app"})).outcome is Match.FULL
    result = match(rule, make_event(data={"channel": "phone"}))
    assert result.reason == "data.channel is 'phone' (expected one of 'web', 'app')"


def test_a_boolean_does_not_equal_one_or_zero() -> None:
    wants_true = make_rule(match={"data.flag": True})
    wants_one = make_rule(match={"data.count": 1})
    wants_zero = make_rule(match={"data.count": 0})

    assert match(wants_true, make_event(data={"flag": 1})).reason == "data.flag is 1 (expected True)"
    assert match(wants_one, make_event(data={"count": True})).reason == "data.count is True (expected 1)"
    assert match(wants_zero, make_event(data={"count": False})).outcome is Match.PARTIAL
    assert match(wants_true, make_event(data={"flag": True})).outcome is Match.FULL


def test_an_integer_equals_the_same_float() -> None:
    assert match(make_rule(match={"data.total": 10}), make_event(data={"total": 10.0})).outcome is Match.FULL


def test_null_matches_an_explicit_null_but_not_a_missing_field() -> None:
    rule = make_rule(match={"data.coupon": None})

    assert match(rule, make_event(data={"coupon": None})).outcome is Match.FULL
    assert match(rule, make_event(data={})).reason == "data.coupon is missing (expected None)"


def test_conditions_can_test_attributes_extensions_and_list_items() -> None:
    rule = make_rule(match={"subject": "A-1", "tenant": "acme", "data.lines.0.sku": "x"})
    event = make_event(data={"lines": [{"sku": "x"}]}, subject="A-1", extensions={"tenant": "acme"})

    assert match(rule, event).outcome is Match.FULL


def test_a_source_glob_must_match() -> None:
    rule = make_rule(source="/shop/*")

    assert match(rule, make_event(source="/shop/web")).outcome is Match.FULL
    result = match(rule, make_event(source="/warehouse/1"))
    assert result.outcome is Match.PARTIAL
    assert result.reason == "source '/warehouse/1' does not match '/shop/*'"


def test_type_globs_match_event_types() -> None:
    rule = make_rule(type="order.*")

    assert match(rule, make_event("order.paid")).outcome is Match.FULL
    assert match(rule, make_event("user.signup")).outcome is Match.NONE


def test_a_disabled_rule_matches_only_partially_and_says_so() -> None:
    result = match(make_rule(enabled=False), make_event())

    assert result == MatchResult("r", Match.PARTIAL, "the rule is disabled", "disabled")


def test_the_event_view_has_attributes_extensions_and_data() -> None:
    view = event_view(make_event(data=None, extensions={"tenant": "acme"}))

    assert view["type"] == "order.created" and view["tenant"] == "acme"
    assert "data" in view and view["data"] is None


# -- RuleIndex ---------------------------------------------------------------------------------------


def test_candidates_combine_exact_and_glob_rules_in_load_order() -> None:
    everything = make_rule("everything", type="*")
    created = make_rule("created", type="order.created")
    orders = make_rule("orders", type="order.*")
    other = make_rule("other", type="user.signup")
    both = make_rule("both", type=["order.created", "order.paid"])
    index = RuleIndex([everything, created, orders, other, both])

    assert [r.name for r in index.candidates("order.created")] == ["everything", "created", "orders", "both"]
    assert [r.name for r in index.candidates("order.paid")] == ["everything", "orders", "both"]
    assert [r.name for r in index.candidates("user.signup")] == ["everything", "other"]


def test_a_rule_listing_a_type_twice_is_a_candidate_once() -> None:
    index = RuleIndex([make_rule(type=["order.created", "order.created"])])

    assert len(index.candidates("order.created")) == 1


def test_an_unknown_type_has_no_candidates() -> None:
    index = RuleIndex([make_rule(type="order.created")])

    assert index.candidates("user.signup") == []
    assert index.evaluate(make_event("user.signup")) == []


def test_evaluate_gives_every_listening_rule_with_its_outcome() -> None:
    eu = make_rule("eu", match={"data.region": "eu"})
    us = make_rule("us", match={"data.region": "us"})
    off = make_rule("off", enabled=False)
    index = RuleIndex([eu, us, off, make_rule("users", type="user.*")])

    results = index.evaluate(make_event(data={"region": "eu"}))

    assert [(rule.name, result.outcome) for rule, result in results] == [
        ("eu", Match.FULL), ("us", Match.PARTIAL), ("off", Match.PARTIAL)]
    assert results[1][1].reason == "data.region is 'eu' (expected 'us')"
