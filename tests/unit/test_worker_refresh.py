"""A worker's catalogue and a workflow version it does not have (executors/refresh.py): loaded again only
when the project's files changed, keeping the versions it had; a made-up version never makes it import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from executors.catalog import Catalog, UnknownWorkflowVersion, WorkflowNotDeployed
from executors.refresh import ProjectRefresh
from orchestrator.cli.wiring import load_project
from orchestrator.project import Project
from orchestrator.workflows.spec import WorkflowSpec

from ..projects import make_project

FLOW = '''\
from orchestrator import task, workflow


@task
def pack(order_id: str) -> str:
    return order_id


@task
def label(packed: str) -> str:
    return packed


@workflow
def ship(order_id: str):
    {body}
'''
RULES = "rules:\n  - {name: r, type: t, workflow: ship, params: {order_id: x}}\n"


def payload(spec: WorkflowSpec, node: str) -> dict[str, Any]:
    return {"workflow": spec.name, "version": spec.digest, "node": node, "run": "run-1", "attempt": 1,
            "args": [{"$lit": "o-1"}] if node == "pack" else [{"$lit": "x"}]}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_project(tmp_path / "p", rules=RULES, workflows={"ship": FLOW.format(body="pack(order_id)")})


def counted(root: Path, loads: list[Project]) -> ProjectRefresh:
    def load() -> Project:
        loads.append(load_project(root))
        return loads[-1]
    return ProjectRefresh(root, load)


def test_a_new_version_is_learned_when_the_files_changed_and_the_old_one_is_kept(root: Path) -> None:
    old = load_project(root)
    loads: list[Project] = []
    catalog = Catalog([w.spec for w in old.workflows.values()], old.tasks, 60.0, counted(root, loads))
    (root / "workflows" / "ship.py").write_text(FLOW.format(body="label(pack(order_id))"))
    new = load_project(root)
    new_spec, old_spec = new.workflows["ship"].spec, old.workflows["ship"].spec
    assert new_spec.digest != old_spec.digest

    assert catalog.work(payload(new_spec, "label")).task == "label"
    assert catalog.work(payload(old_spec, "pack")).task == "pack"  # runs started before the change still run
    assert len(loads) == 1


def test_a_made_up_version_is_refused_without_loading_anything(root: Path) -> None:
    project = load_project(root)
    loads: list[Project] = []
    catalog = Catalog([w.spec for w in project.workflows.values()], project.tasks, 60.0, counted(root, loads))
    forged = {**payload(project.workflows["ship"].spec, "pack"), "version": "0123456789ab"}
    for _ in range(3):
        with pytest.raises(UnknownWorkflowVersion):
            catalog.work(dict(forged))
    assert loads == []


def test_a_change_that_does_not_load_keeps_the_workflows_and_refuses_the_job(root: Path) -> None:
    project = load_project(root)
    loads: list[Project] = []
    catalog = Catalog([w.spec for w in project.workflows.values()], project.tasks, 60.0, counted(root, loads))
    (root / "workflows" / "ship.py").write_text("this is not python\n")
    with pytest.raises(UnknownWorkflowVersion):
        catalog.work({**payload(project.workflows["ship"].spec, "pack"), "version": "0123456789ab"})
    assert catalog.work(payload(project.workflows["ship"].spec, "pack")).task == "pack"


def test_a_version_still_being_deployed_is_retryable_and_an_old_one_final(root: Path) -> None:
    project = load_project(root)
    asked: list[tuple[str, str]] = []
    catalog = Catalog([w.spec for w in project.workflows.values()], project.tasks, 60.0, None,
                      lambda workflow, version: asked.append((workflow, version)) or version == "0123456789ab")
    spec = project.workflows["ship"].spec
    with pytest.raises(WorkflowNotDeployed) as caught:
        catalog.work({**payload(spec, "pack"), "version": "0123456789ab"})
    assert caught.value.retryable is True and caught.value.error_type == "WorkflowNotDeployed"
    with pytest.raises(UnknownWorkflowVersion) as final:
        catalog.work({**payload(spec, "pack"), "version": "ba9876543210"})
    assert final.value.retryable is False
    assert catalog.work(payload(spec, "pack")).task == "pack" and len(asked) == 2  # known: not asked
