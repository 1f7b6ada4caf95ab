"""`orch rules test` (offline, no Redis) and the rule checks of `orch validate`, driven as a user does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..projects import copy_examples, make_project
from .conftest import orch, orch_env

pytestmark = pytest.mark.e2e

NO_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: a command that needed Redis would fail

WORKFLOW = {"shop": """\
    from orchestrator import task, workflow

    @task
    def handle(order_id: str, amount: float = 0.0) -> str:
        return order_id

    @workflow
    def handle_order(order_id: str, amount: float = 0.0):
        handle(order_id, amount)
    """}

RULES = """\
    rules:
      - name: all-orders
        type: order.created
        workflow: handle_order
        params:
          order_id: "{{ data.order_id }}"
      - name: web-orders
        type: order.*
        match:
          data.channel: web
        workflow: handle_order
        params:
          order_id: "{{ data.order_id }}"
      - name: large-orders
        type: order.created
        if: data.amount >= 100.0 && data.items.exists(i, i.qty > 1)
        workflow: handle_order
        params:
          order_id: "{{ data.order_id }}"
          amount: "{{ data.amount / data.divisor }}"
    """


def _project(tmp_path: Path, rules: str = RULES) -> Path:
    return make_project(tmp_path / "project", rules=rules, workflows=WORKFLOW)


def _event_file(tmp_path: Path, event: object, name: str = "event.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(event))
    return path


def _env(project: Path, url: str | None = NO_REDIS) -> dict[str, str]:
    return orch_env(url, project)


def test_rules_test_reports_each_candidate_rule_offline(tmp_path: Path) -> None:
    project = _project(tmp_path)
    event = _event_file(tmp_path, {"type": "order.created", "source": "/shop", "data": {
        "order_id": "A-1", "amount": 150, "channel": "app", "divisor": 0, "items": [{"qty": 2}]}})

    result = orch("rules", "test", str(event), env=_env(project))

    lines = result.stdout.splitlines()
    assert lines[0] == "event order.created from /shop (filled in: specversion, id)"
    assert lines[1] == "3 candidate rule(s), 2 matched"
    assert lines[2] == '  matched      all-orders -> handle_order  params: {"order_id": "A-1", "amount": 0.0}'
    assert lines[3] == "  not matched  web-orders -> handle_order: data.channel is 'app' (expected 'web')"
    assert lines[4] == "               at data.channel: saw 'app', expected 'web'"
    assert lines[5].startswith("  matched      large-orders -> handle_order: parameters did not render: ")
    assert "division by zero" in lines[5]


def test_rules_test_json_gives_the_if_outcome(tmp_path: Path) -> None:
    project = _project(tmp_path)
    event = _event_file(tmp_path, {"specversion": "1.0", "id": "e-1", "type": "order.created", "source": "/shop",
                                   "data": {"order_id": "A-2", "amount": 20, "channel": "web", "items": []}})

    report = json.loads(orch("rules", "test", str(event), "--json", env=_env(project)).stdout)

    assert report["filled_in"] == [] and report["event"]["id"] == "e-1"
    assert report["matched"] == ["all-orders", "web-orders"]
    large = report["rules"][2]
    assert large == {"rule": "large-orders", "workflow": "handle_order", "matched": False, "stopped_by": "if",
                     "reason": "if: 'data.amount >= 100.0 && data.items.exists(i, i.qty > 1)' is false"}
    missing = _event_file(tmp_path, {"type": "order.created", "data": {"order_id": "A-3"}}, "missing.json")
    report = json.loads(orch("rules", "test", str(missing), "--json", env=_env(project)).stdout)
    assert report["filled_in"] == ["specversion", "id", "source"]
    assert "no such key" in report["rules"][2]["reason"]


def test_rules_test_with_a_proposed_rule_set(tmp_path: Path) -> None:
    project = _project(tmp_path)
    proposed = tmp_path / "proposed"
    proposed.mkdir()
    (proposed / "new.yaml").write_text("rules:\n  - name: only-eu\n    type: order.created\n"
                                       "    if: event.source == '/shop/eu'\n    workflow: handle_order\n"
                                       "    params:\n      order_id: \"{{ data.order_id }}\"\n")
    event = _event_file(tmp_path, {"type": "order.created", "source": "/shop/eu", "data": {"order_id": "A-4"}})

    report = json.loads(orch("rules", "test", str(event), "--rules", str(proposed), "--json",
                             env=_env(project)).stdout)

    assert [(r["rule"], r["matched"], r["params"]) for r in report["rules"]] == [("only-eu", True, {"order_id": "A-4",
                                                                                            "amount": 0.0})]


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"source": "/x", "data": {}}', "has no 'type'"),
    ('{"type": "order.created", "time": "yesterday"}', "time"),
])
def test_rules_test_refuses_bad_input_with_exit_2(tmp_path: Path, content: str, message: str) -> None:
    project = _project(tmp_path)
    path = tmp_path / "bad.json"
    path.write_text(content)

    result = orch("rules", "test", str(path), env=_env(project), check=False)

    assert result.returncode == 2 and message in result.stderr, result.stderr
    missing = orch("rules", "test", str(tmp_path / "nowhere.json"), env=_env(project), check=False)
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_rules_test_reports_broken_rules_with_exit_2(tmp_path: Path) -> None:
    project = _project(tmp_path, RULES.replace("data.amount >= 100.0", "data.amount >="))
    event = _event_file(tmp_path, {"type": "order.created", "data": {}})

    result = orch("rules", "test", str(event), env=_env(project), check=False)

    assert result.returncode == 2 and "rules[2].if" in result.stderr


def test_validate_names_the_file_line_and_field_of_a_bad_if(tmp_path: Path) -> None:
    project = _project(tmp_path, RULES.replace("data.amount >= 100.0", "data.amount >="))

    result = orch("validate", "--no-redis", env=_env(project), check=False)

    assert result.returncode == 1
    assert f"{project / 'rules' / 'rules.yaml'}:16: rules[2].if: 'data.amount >= && data.items" in result.stderr
    assert "is not a valid CEL expression" in result.stderr


def test_validate_refuses_an_expression_that_could_blow_up(tmp_path: Path) -> None:
    costly = "data.items.map(i, data.items.map(j, data.items.map(k, k)))"
    project = _project(tmp_path, RULES.replace("data.amount >= 100.0 && data.items.exists(i, i.qty > 1)", costly))

    result = orch("validate", "--no-redis", "--json", env=_env(project), check=False)

    issues = json.loads(result.stdout)["issues"]
    assert result.returncode == 1 and [(i["line"], i["field"]) for i in issues] == [(16, "rules[2].if")]
    assert "nests comprehensions (all, exists, exists_one, map, filter) 3 deep" in issues[0]["message"]


HUGE = "99999999999999999999"  # over 2**63: orjson, Redis and event-ruler cannot hold it exactly
HUGE_RULES = f"""\
    rules:
      - name: counted
        type: order.created
        workflow: handle_order
        params:
          order_id: "{{{{ data.order_id }}}}"
          amount: {HUGE}
      - name: many
        type: order.created
        match:
          data.count: [1, {HUGE}]
        workflow: handle_order
        params: {{order_id: x}}
      - name: not-minus
        type: order.created
        match: {{data.n: {{anything-but: [-{HUGE}]}}}}
        workflow: handle_order
        params: {{order_id: x}}
    """


def test_validate_refuses_integers_no_json_tool_holds_with_the_file_line_and_field(tmp_path: Path) -> None:
    project = _project(tmp_path, HUGE_RULES)

    result = orch("validate", "--no-redis", "--json", env=_env(project), check=False)
    text = orch("validate", "--no-redis", env=_env(project), check=False)

    issues = json.loads(result.stdout)["issues"]
    assert result.returncode == 1 and "Traceback" not in result.stderr + text.stderr
    assert [(i["line"], i["field"]) for i in issues] == [(7, "rules[0].params.amount"),
                                                         (11, "rules[1].match.data.count[1]"),
                                                         (16, "rules[2].match.data.n.anything-but[0]")]
    assert "outside the 64-bit integer range" in issues[1]["message"]
    assert f"{project / 'rules' / 'rules.yaml'}:11: rules[1].match.data.count[1]" in text.stderr


SCHEMA = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
          "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}}}


def test_validate_warns_about_paths_the_declared_schema_lacks_and_strict_fails(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "schemas").mkdir()
    (project / "schemas" / "order.created.json").write_text(json.dumps(SCHEMA))
    (project / "schemas" / "user.signup.json").write_text('{"type": 12}')

    result = orch("validate", "--no-redis", env=_env(project))
    strict = orch("validate", "--no-redis", "--strict", "--json", env=_env(project), check=False)

    rules_file = project / "rules" / "rules.yaml"
    assert (f"warning: {rules_file}:7: rules.web-orders.match.data.channel: data.channel is not in the schema "
            "of order.created (schemas/<type>.json): this condition can never hold") in result.stderr
    assert f"warning: {project / 'schemas' / 'user.signup.json'}: type: not a valid JSON Schema" in result.stderr
    assert "note: recorded events not checked (--no-redis)" in result.stderr
    assert strict.returncode == 1
    summary = json.loads(strict.stdout)
    assert summary["ok"] is False and len(summary["warnings"]) == 2


def test_validate_warns_about_paths_no_recorded_event_has(tmp_path: Path, redis_url: str) -> None:
    project = _project(tmp_path)
    env = _env(project, redis_url)
    for n in range(2):
        orch("emit", "order.created", "--source", "/shop", "--data", json.dumps({"order_id": f"A-{n}"}), env=env)

    result = orch("validate", env=env)
    offline = orch("validate", env=_env(project))

    assert "rules.web-orders.match.data.channel: data.channel is absent from all 2 recorded events of " \
           "order.created" in result.stderr
    assert result.returncode == 0
    assert "note: recorded events not checked: Redis is not reachable" in offline.stderr and offline.returncode == 0


def test_the_example_project_validates_cleanly_and_its_if_rule_matches(tmp_path: Path) -> None:
    project = copy_examples(tmp_path / "examples")

    result = orch("validate", "--no-redis", "--strict", env=_env(project))
    report = json.loads(orch("rules", "test", str(project / "events" / "order.created.priority.json"), "--json",
                             env=_env(project)).stdout)

    assert "warning" not in result.stderr
    assert report["matched"] == ["process-priority-shop-orders", "process-new-orders"]
