"""Declaring hold-back flow control on a rule: what `orch validate` accepts, and where it points when not."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.rules.flow_model import compile_control, shown_key
from orchestrator.rules.model import RuleConfig

from .test_project import HELLO, load_project, located, make_project, only_issue

BASE = {"name": "r", "type": "t", "workflow": "hello"}


def rule_with(tmp_path: Path, control: str, module: str) -> Path:
    return make_project(tmp_path, {"flow.yaml": f"""\
        rules:
          - name: greet-users
            type: user.signup
            workflow: hello
            params:
              name: x
{control}
        """}, {f"{module}.py": HELLO})


def test_each_control_loads_compiled_on_the_rule(tmp_path: Path) -> None:
    rule_with(tmp_path, "            debounce: {key: data.customer_id, period_s: 5, max_wait_s: 60}", "flow_ok")
    (rule,) = load_project(tmp_path).rules
    assert rule.hold is not None and rule.hold.kind == "debounce"
    assert (rule.hold.period_ms, rule.hold.max_wait_ms) == (5000, 60000)
    assert rule.hold.key_of({"data": {"customer_id": 7}}) == ("7", None)


def test_a_bad_key_expression_is_located(tmp_path: Path) -> None:
    rule_with(tmp_path, "            throttle: {key: 'data.(', limit: 1, period_s: 5}", "flow_key")
    issue = only_issue(tmp_path)
    assert located(issue) == ("flow.yaml", 7, "rules[0].throttle.key")
    assert "not a valid CEL expression" in issue.message


def test_a_bad_field_of_a_control_is_located(tmp_path: Path) -> None:
    rule_with(tmp_path, "            batch:\n              max_size: 0\n              timeout_s: 5", "flow_size")
    issue = only_issue(tmp_path)
    assert located(issue) == ("flow.yaml", 8, "rules[0].batch.max_size")


def test_max_wait_shorter_than_the_period_is_refused(tmp_path: Path) -> None:
    rule_with(tmp_path, "            debounce: {period_s: 10, max_wait_s: 5}", "flow_wait")
    issue = only_issue(tmp_path)
    assert issue.field == "rules[0].debounce.max_wait_s" and "at least period_s" in issue.message


def test_two_hold_back_controls_on_one_rule_are_refused(tmp_path: Path) -> None:
    rule_with(tmp_path, "            debounce: {period_s: 10}\n            rate_limit: {limit: 1, period_s: 60}",
              "flow_two")
    issue = only_issue(tmp_path)
    assert located(issue)[:2] == ("flow.yaml", 2)
    assert "debounce and rate_limit cannot be combined on one rule" in issue.message


@pytest.mark.parametrize("field", ["debounce", "batch", "throttle", "rate_limit"])
def test_unknown_fields_inside_a_control_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        RuleConfig.model_validate({**BASE, field: {"period_s": 1, "limit": 1, "max_size": 1, "timeout_s": 1,
                                                   "wait": 3}})


def test_a_key_that_cannot_be_evaluated_is_the_empty_key_with_the_reason() -> None:
    control = compile_control(RuleConfig.model_validate({**BASE, "rate_limit": {"key": "data.customer_id",
                                                                                "limit": 1, "period_s": 1}}))
    assert control is not None
    key, error = control.key_of({"data": {}})
    assert key == "" and error is not None and "customer_id" in error
    assert control.key_of({"data": {"customer_id": {"b": 1, "a": 2}}})[0] == '{"b":1,"a":2}'


def test_a_rule_without_a_control_has_none() -> None:
    assert compile_control(RuleConfig.model_validate(BASE)) is None


def test_a_yaml_workflow_may_read_the_events_of_its_run(tmp_path: Path) -> None:
    make_project(tmp_path, {"flow.yaml": """\
        rules:
          - {name: r, type: t, workflow: sums, batch: {max_size: 5, timeout_s: 5}}
        """}, {"flow_yaml.py": HELLO, "sums.yaml": """\
        workflows:
          - name: sums
            tasks:
              - name: greet
                uses: greet
                with: {name: "{{ events | length }} events", greeting: "{{ events[0].data }}"}
                when: "{{ events | length > 1 }}"
        """})
    project = load_project(tmp_path)
    assert "sums" in project.workflows and project.rules[0].hold is not None


def test_the_catalogue_shows_a_rules_control_as_written(tmp_path: Path) -> None:
    from orchestrator.catalog.build import build_catalog

    rule_with(tmp_path, "            throttle: {key: data.account, limit: 10, period_s: 60, burst: 3}", "flow_cat")
    catalog = build_catalog(load_project(tmp_path), datetime(2026, 1, 1, tzinfo=UTC))
    assert catalog["rules"][0]["hold"] == "throttle: key=data.account, limit=10, period_s=60.0, burst=3"


def test_a_long_key_is_kept_whole_and_only_shown_cut() -> None:
    control = compile_control(RuleConfig.model_validate({**BASE, "debounce": {"key": "data.customer_id",
                                                                              "period_s": 1}}))
    assert control is not None
    long = "x" * 300 + "a"
    assert control.key_of({"data": {"customer_id": long}}) == (long, None)
    assert shown_key(long) == "x" * 200
