"""The project catalogue, pure: what build_catalog makes of a loaded project, what it never shows, the graph
shape shared with runs, and the pieces of the workers/queues views that need no Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from orchestrator.catalog import build_catalog, dag_nodes
from orchestrator.catalog.build import fed_rules
from orchestrator.catalog.fleet import THROUGHPUT_TTL_S, FinishedCounter, _worker_row
from orchestrator.catalog.model import Catalog
from orchestrator.cli.wiring import load_project
from orchestrator.jsonutil import dumps
from orchestrator.project import Project
from orchestrator.state import rq_keys
from orchestrator.state.keys import Keys
from orchestrator.workflows.runs import Run

from ..catalog_project import HOOK_SECRET_ENV, catalog_project

NOW = datetime(2026, 3, 28, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return load_project(catalog_project(tmp_path_factory.mktemp("catalog") / "shop"))


@pytest.fixture(scope="module")
def catalog(project: Project) -> dict[str, Any]:
    return build_catalog(project, NOW)


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def test_the_catalogue_names_the_project_and_when_it_was_written(catalog: dict[str, Any], project: Project) -> None:
    assert catalog["format"] == 1
    assert catalog["written_at"] == "2026-03-28T12:00:00Z"
    assert catalog["project"] == {"name": "shop", "path": str(project.root)}
    assert Catalog.model_validate(catalog).model_dump(mode="json") == catalog, "it reads back as it was written"


def test_rules_show_their_patterns_filter_params_and_what_feeds_them(catalog: dict[str, Any]) -> None:
    rules = by_name(catalog["rules"])

    assert list(rules) == ["hold", "eu-orders", "nightly-report", "shop-hooks", "csv-files"]
    assert rules["eu-orders"] == {
        "name": "eu-orders", "types": ["order.created", "order.updated"], "source": "/shop/*",
        "filter": 'data.region == "eu" and data.channel in ["web", "app"]', "workflow": "batch",
        "params": {"ids": '["{{ data.id }}"]', "limit": "3"}, "enabled": True, "schedules": [], "concurrency": None,
        "hold": None}
    assert rules["hold"]["params"] == {"gate": "{{ data.gate }}"} and rules["hold"]["concurrency"] == 2
    assert rules["nightly-report"]["schedules"] == [{"name": "nightly", "overlap": "skip"}]
    assert rules["shop-hooks"]["enabled"] is False


def test_workflows_show_their_graph_with_task_options(catalog: dict[str, Any], project: Project) -> None:
    workflows = by_name(catalog["workflows"])

    assert sorted(workflows) == ["batch", "greet", "hold"]
    batch = workflows["batch"]
    assert (batch["kind"], batch["version"], batch["timeout_s"]) == ("python", project.workflows["batch"].spec.digest,
                                                                     600.0)
    assert batch["params"] == [{"name": "ids", "required": True}, {"name": "limit", "required": False}]
    fetch, total = batch["nodes"]
    assert (fetch["name"], fetch["retries"], fetch["timeout_s"], fetch["mapped"], fetch["upstream"]) == (
        "fetch", 2, 30.0, True, [])
    assert (total["name"], total["upstream"], total["mapped"]) == ("total", ["fetch"], False)
    greet = workflows["greet"]
    assert greet["kind"] == "yaml"
    assert [(n["name"], n["kind"], n["upstream"], n["when"]) for n in greet["nodes"]] == [
        ("hello", "shell", [], None), ("done", "shell", ["hello"], "params.people | length > 0")]
    assert workflows["hold"]["concurrency"] == 2


def test_workflows_never_show_their_tasks_literal_arguments(catalog: dict[str, Any]) -> None:
    greet = by_name(catalog["workflows"])["greet"]

    assert "echo" not in dumps(greet).decode(), "a command, a URL or a header may carry a secret"


def test_a_runs_graph_has_the_same_shape_as_its_workflows(catalog: dict[str, Any], project: Project) -> None:
    spec = project.workflows["batch"].spec
    stored = Run.from_fields({b"meta": dumps({"id": "r", "workflow": "batch", "rule": "eu-orders",
                                              "event": {"id": "e", "source": "/shop/1", "type": "order.created"},
                                              "params": {}, "status": "running", "created_at": "2026-03-28T12:00:00Z"}),
                              b"spec": dumps(spec.to_dict()), b"event": b"{}"})

    assert dag_nodes(stored.spec) == by_name(catalog["workflows"])["batch"]["nodes"]


def test_triggers_show_themselves_and_the_rules_they_feed(catalog: dict[str, Any], project: Project) -> None:
    (schedule,) = catalog["schedules"]
    (hook,) = catalog["hooks"]
    (watch,) = catalog["watches"]

    assert schedule == {"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "enabled": True,
                        "type": "schedule.fired", "source": "/schedules/nightly", "catchup": "latest",
                        "overlap": "skip", "rules": ["nightly-report"]}
    assert hook == {"name": "shop", "path": "/hooks/shop", "verify": "token", "source": "/hooks/shop",
                    "enabled": True, "rules": ["shop-hooks"]}
    assert watch == {"name": "inbox", "directory": str(project.root / "inbox"), "include": ["*.csv"],
                     "exclude": ["tmp/**"], "recursive": True, "events": ["file.added", "file.modified", "file.deleted"],
                     "source": "/watches/inbox", "enabled": True, "rules": ["csv-files"]}


def test_webhooks_never_show_their_secrets_or_where_they_are_kept(catalog: dict[str, Any]) -> None:
    text = dumps(catalog).decode()

    assert HOOK_SECRET_ENV not in text and "X-Shop-Token" not in text and "secret" not in text.lower()


def test_fed_rules_match_types_and_sources_and_need_a_source_when_types_are_unknown(project: Project) -> None:
    assert fed_rules(project.rules, ["order.created"], "/shop/eu") == ["eu-orders"]
    assert fed_rules(project.rules, ["order.created"], "/elsewhere") == []
    assert fed_rules(project.rules, ["file.added"], "/watches/any") == ["csv-files"]  # no source: any source
    assert fed_rules(project.rules, None, "/hooks/shop") == ["shop-hooks"]
    assert fed_rules(project.rules, None, "/watches/any") == [], "types unknown: a rule without a source is no match"


def test_an_empty_project_has_an_empty_catalogue(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()

    catalog = build_catalog(load_project(tmp_path), NOW)

    assert [catalog[k] for k in ("rules", "workflows", "schedules", "hooks", "watches")] == [[], [], [], [], []]


# -- workers and queues, the parts without Redis ----------------------------------------------------------------


def test_the_core_names_rqs_keys_as_the_installed_rq_does() -> None:
    assert rq_keys.job_key("j") == Job.redis_job_namespace_prefix + "j"
    assert rq_keys.queue_key("orch.default") == Queue.redis_queue_namespace_prefix + "orch.default"
    assert rq_keys.QUEUES == Queue.redis_queues_keys
    for kind, registry in (("started", StartedJobRegistry), ("finished", FinishedJobRegistry),
                           ("failed", FailedJobRegistry)):
        assert rq_keys.registry_key(kind, "orch.q") == registry.key_template.format("orch.q")


def test_a_finished_task_costs_one_increment_and_an_expire_once_an_hour_per_queue() -> None:
    counter = FinishedCounter(Keys("p"))
    hour = 1_800_000_000 // 3600 * 3600.0

    first = counter.commands("p.default", hour + 61)
    second = counter.commands("p.default", hour + 125)
    other_queue = counter.commands("p.io", hour + 130)
    next_hour = counter.commands("p.default", hour + 3601)

    key = f"p:throughput:default:{int(hour // 3600)}"
    assert first == [("HINCRBY", key, int(hour // 60) + 1, 1), ("EXPIRE", key, THROUGHPUT_TTL_S)]
    assert second == [("HINCRBY", key, int(hour // 60) + 2, 1)]
    assert [c[0] for c in other_queue] == ["HINCRBY", "EXPIRE"] and other_queue[0][1] == key.replace("default", "io")
    assert next_hour[0][1] == f"p:throughput:default:{int(hour // 3600) + 1}" and len(next_hour) == 2


def test_a_heartbeat_read_back_is_untrusted_and_a_bad_field_shows_as_missing() -> None:
    row = _worker_row("w1", {"host": "h", "pid": "x", "queues": "default,io", "state": "busy", "job": "j1",
                             "run": "r", "node": "n", "attempt": "nan", "job_started_at": "inf", "jobs_done": "-3",
                             "heartbeat_at": "1e400", "started_at": "9" * 400}, 1_800_000_000.0, 2,
                      1_800_000_010.0)

    assert row["pid"] is None and row["queues"] == ["default", "io"] and row["jobs_done"] == 0
    assert row["heartbeat_at"] == "2027-01-15T08:00:00Z" and row["heartbeat_age_s"] == 10.0  # the zset's score
    assert row["started_at"] is None
    assert row["current"] == {"job": "j1", "run": "r", "node": "n", "task": None, "attempt": None,
                              "started_at": None, "running_s": None, "timeout_s": None}


def test_a_worker_without_a_heartbeat_is_lost() -> None:
    row = _worker_row("w2", {}, 1_800_000_000.0, 1, 1_800_000_030.0)

    assert (row["alive"], row["state"], row["claimed"], row["current"]) == (False, "lost", 1, None)
    assert row["heartbeat_age_s"] == 30.0
