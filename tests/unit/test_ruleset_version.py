"""The rule-set version: stable for the same rules and workflows, different when either changes; what
travels through Redis (rule configs as data) builds the same version over the same workflows; runs keep it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.cli.wiring import load_project
from orchestrator.engine.plan import plan_event
from orchestrator.errors import ConfigError
from orchestrator.events.envelope import event_from_mapping
from orchestrator.jsonutil import dumps
from orchestrator.project import with_rules
from orchestrator.rules.version import ruleset_version
from orchestrator.state.ruleset import RulesetError, parse_active
from orchestrator.workflows.lifecycle import new_run
from orchestrator.workflows.runs import EventRef, Run

from ..helpers import EXAMPLES
from ..projects import make_project

FLOW = '''\
from orchestrator import task, workflow


@task
def first(order_id: str) -> str:
    return order_id


@task
def second(value: str) -> str:
    return value


@workflow
def ship(order_id: str):
    {body}
'''
ONE_TASK = FLOW.format(body="first(order_id)")
TWO_TASKS = FLOW.format(body="second(first(order_id))")

RULES = """\
rules:
  - name: ship-orders
    type: order.paid
    match: {{data.region: {region}}}
    workflow: ship
    params: {{order_id: "{{{{ event.data.id }}}}"}}
  - name: ship-gifts
    type: gift.paid
    workflow: ship
    params: {{order_id: "{{{{ event.data.id }}}}"}}
"""


def project_at(root: Path, *, region: str = "eu", flow: str = ONE_TASK, rules: str = RULES) -> Path:
    return make_project(root, rules=rules.format(region=region), workflows={"ship": flow})


def test_the_same_project_has_the_same_version_wherever_it_is_loaded(tmp_path: Path) -> None:
    one = load_project(project_at(tmp_path / "a"))
    two = load_project(project_at(tmp_path / "b"))
    assert one.ruleset == two.ruleset
    assert len(one.ruleset) == 12 and int(one.ruleset, 16) >= 0


def test_rule_order_and_defaults_written_out_do_not_change_the_version(tmp_path: Path) -> None:
    base = load_project(project_at(tmp_path / "a")).ruleset
    swapped = RULES.split("  - name: ship-gifts")
    reordered = "rules:\n  - name: ship-gifts" + swapped[1] + swapped[0].removeprefix("rules:\n")
    assert load_project(project_at(tmp_path / "b", rules=reordered)).ruleset == base
    explicit = RULES.replace("    workflow: ship\n", "    workflow: ship\n    enabled: true\n")
    assert load_project(project_at(tmp_path / "c", rules=explicit)).ruleset == base


def test_changing_a_rule_adding_one_or_changing_a_workflow_changes_the_version(tmp_path: Path) -> None:
    base = load_project(project_at(tmp_path / "a")).ruleset
    other_match = load_project(project_at(tmp_path / "b", region="us")).ruleset
    more = RULES + "  - name: ship-more\n    type: more.paid\n    workflow: ship\n    params: {{order_id: x}}\n"
    added = load_project(project_at(tmp_path / "c", rules=more)).ruleset
    graph = load_project(project_at(tmp_path / "d", flow=TWO_TASKS)).ruleset
    assert len({base, other_match, added, graph}) == 4


def test_the_version_is_a_pure_function_of_configs_and_digests() -> None:
    configs = [{"name": "b", "type": "x"}, {"name": "a", "type": "y"}]
    assert ruleset_version(configs, {"w": "1", "v": "2"}) == ruleset_version(configs[::-1], {"v": "2", "w": "1"})
    assert ruleset_version(configs, {"w": "1"}) != ruleset_version(configs, {"w": "2"})


def test_the_examples_rules_read_back_from_data_give_the_same_version() -> None:
    project = load_project(EXAMPLES)
    again = with_rules(project, project.rule_configs, "redis")
    assert again.ruleset == project.ruleset
    assert [r.name for r in again.rules] == [r.name for r in project.rules]


def test_rules_from_data_are_checked_like_rules_from_files(tmp_path: Path) -> None:
    project = load_project(project_at(tmp_path))
    configs = [dict(c) for c in project.rule_configs]
    configs[1]["workflow"] = "nope"
    configs[0]["typo"] = 1
    with pytest.raises(ConfigError) as caught:
        with_rules(project, configs, "orch:ruleset:data")
    where = sorted((str(i.file), i.field) for i in caught.value.issues)
    assert where == [("orch:ruleset:data", "rules[0].typo"), ("orch:ruleset:data", "rules[1].workflow")]


def test_a_publication_read_back_is_checked_for_shape() -> None:
    good = {"version": "abc123", "rules": [{"name": "r"}], "workflows": {"w": "d1"}, "at": 1.0, "by": "h 1 x"}
    assert parse_active("abc123", good).workflows == {"w": "d1"}
    for version, data in [("not hex!", good), ("abc124", good), ("abc123", {**good, "rules": "x"}),
                          ("abc123", {**good, "workflows": {"w": 1}}), ("abc123", None)]:
        with pytest.raises(RulesetError):
            parse_active(version, data)


def test_a_planned_run_carries_the_version_and_the_run_keeps_it(tmp_path: Path) -> None:
    project = load_project(project_at(tmp_path))
    event = event_from_mapping({"specversion": "1.0", "id": "e1", "source": "/t", "type": "order.paid",
                                "data": {"id": "o-1", "region": "eu"}})
    (request,), _ = plan_event(project, event)
    assert request.ruleset == project.ruleset
    run = new_run(request.run_id, request.spec, request.rule, request.event, request.params or {},
                  datetime.now(UTC)).run
    run.ruleset = request.ruleset
    fields = {k.encode(): v for k, v in run.to_fields(spec=True).items()}
    assert Run.from_fields(fields).ruleset == project.ruleset
    assert run.to_dict()["ruleset"] == project.ruleset


def test_a_forged_version_read_back_from_redis_is_dropped() -> None:
    spec = load_project(EXAMPLES).workflows["process_order"].spec
    run = new_run("r1", spec, "rule", EventRef("e", "/s", "t"), {"order_id": "o", "amount": 1.0, "items": []},
                  datetime.now(UTC)).run
    for forged in ("<script>", "A" * 10, 7, "f" * 65):
        fields = {k.encode(): v for k, v in run.to_fields(spec=True).items()}
        meta = Run.from_fields(fields).meta_dict()
        meta["ruleset"] = forged
        fields[b"meta"] = dumps(meta)
        assert Run.from_fields(fields).ruleset is None


def test_rules_from_data_leave_the_local_project_as_it_was(tmp_path: Path) -> None:
    project = load_project(project_at(tmp_path))
    locations, sections = dict(project.locations), {k: dict(v) for k, v in project.sections.items()}
    other = with_rules(project, project.rule_configs, "orch:ruleset:data")
    other.sections.setdefault("schedules", {})["new"] = {}
    assert project.locations == locations and project.sections == sections  # a copy, not the same dicts
    assert other.locations is not project.locations and other.sections is not project.sections
    assert other.locations[("rules", "ship-orders")][0] == Path("orch:ruleset:data")
