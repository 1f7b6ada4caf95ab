"""Rule paths that can never match (rules/reach.py): against a declared schema, against recorded events."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.rules.model import Rule, RuleConfig
from orchestrator.rules.reach import schema_has_path, unreachable_paths, value_has_path

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "customer": {"$ref": "#/$defs/customer"},
        "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
        "meta": {"type": "object"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "object",
                                                                       "properties": {"x": {}}}]},
        "either": {"anyOf": [{"type": "object", "properties": {"a": {}}, "additionalProperties": False},
                             {"type": "object", "properties": {"b": {}}, "additionalProperties": False}]},
    },
    "$defs": {"customer": {"type": "object", "properties": {"tier": {"type": "string"}}}},
}


@pytest.mark.parametrize(("path", "present"), [
    ("order_id", True), ("orderid", False), ("order_id.more", False),
    ("customer.tier", True), ("customer.tierr", False),
    ("items.sku", True), ("items.0.sku", True), ("items.sku.x", False), ("items.price", False),
    ("meta.anything.at.all", True),  # an object that declares no properties is open
    ("labels.team", True),  # additionalProperties is a schema
    ("pair.1.x", True), ("pair.1.y", False),
    ("either.a", True), ("either.b", True), ("either.c", False),
])
def test_schema_paths(path: str, present: bool) -> None:
    assert schema_has_path(SCHEMA, path.split(".")) is present


def test_value_paths_look_into_every_element_of_a_list() -> None:
    event = {"data": {"items": [{"sku": "a"}, {"qty": 1}]}}
    assert value_has_path(event, ["data", "items", "qty"]) and value_has_path(event, ["data", "items", "1", "qty"])
    assert not value_has_path(event, ["data", "items", "0", "qty"]) and not value_has_path(event, ["data", "x"])


def _rule(name: str, match: dict[str, Any], types: str | list[str] = "order.created") -> Rule:
    return Rule.from_config(RuleConfig(name=name, type=types, workflow="w", match=match))


def test_unreachable_paths_from_the_schema_of_each_type_the_rule_listens_to() -> None:
    rules = [_rule("ok", {"data.customer.tier": "gold"}), _rule("typo", {"data.custmer.tier": "gold"}),
             _rule("glob", {"data.custmer.tier": "gold"}, "order.*"), _rule("other", {"data.x": 1}, "user.signup"),
             _rule("outside-data", {"subject": "x"})]
    warnings = unreachable_paths(rules, {"order.created": SCHEMA}, [])
    assert [(w.rule, w.path) for w in warnings] == [("typo", "data.custmer.tier"), ("glob", "data.custmer.tier")]
    assert "not in the schema of order.created" in warnings[0].message


def test_unreachable_paths_from_recorded_events_of_the_rule_types() -> None:
    recorded = [{"type": "order.created", "data": {"channel": "web"}}, {"type": "order.created", "data": {}},
                {"type": "user.signup", "data": {"plan": "pro"}}]
    rules = [_rule("seen", {"data.channel": "web"}), _rule("never", {"data.plan": "pro"}),
             _rule("no-events", {"data.plan": "pro"}, "team.created")]
    warnings = unreachable_paths(rules, {}, recorded)
    assert [(w.rule, w.message) for w in warnings] == [
        ("never", "data.plan is absent from all 2 recorded events of order.created")]


@pytest.mark.parametrize(("path", "present"), [("name", True), ("child.name", True), ("child.child.child.name", True),
                                               ("nope", False), ("child.nope", False), ("0.name", True)])
def test_a_schema_that_refers_back_to_itself_is_followed_without_end(path: str, present: bool) -> None:
    """The reviewer's case: a recursive schema through anyOf/allOf and items (RecursionError before)."""
    tree = {"type": "object", "properties": {"name": {"type": "string"}, "child": {"$ref": "#"}},
            "additionalProperties": False, "anyOf": [{"$ref": "#"}], "allOf": [{"$ref": "#/$defs/node"}],
            "$defs": {"node": {"$ref": "#"}, "list": {"items": {"$ref": "#/$defs/list"}}}}
    listed = {"anyOf": [{"$ref": "#"}, {"type": "array", "items": {"$ref": "#/$defs/again"}}],
              "properties": {"name": {"type": "string"}, "child": {"$ref": "#"}}, "additionalProperties": False,
              "$defs": {"again": {"$ref": "#"}}}

    assert schema_has_path(tree, path.split(".")) is (present and not path.startswith("0"))
    assert schema_has_path(listed, path.split(".")) is present
    assert schema_has_path({"items": {"$ref": "#"}}, ["a"]) is False
