"""Reloading without a restart through real processes: `orch engine` watching its project, `orch reload
--wait`, a refused change, and runs that record their rule-set version (CLI and API)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..helpers import wait_for
from ..projects import make_project
from .conftest import Stack, orch, orch_json, start_stack, stop_stack

FLOW = '''\
from orchestrator import task, workflow


@task
def pack(order_id: str) -> str:
    return f"packed {{order_id}}"


@task
def label(packed: str) -> str:
    return f"labelled {{packed}}"


@workflow
def ship(order_id: str):
    {body}
'''
RULES = """\
rules:
  - name: ship-orders
    type: order.paid
    match: {{data.region: {region}}}
    workflow: ship
    params: {{order_id: "{{{{ data.id }}}}"}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("reload")
    project = make_project(root / "project", rules=RULES.format(region="eu"),
                           workflows={"ship": FLOW.format(body="pack(order_id)")})
    running = start_stack(root, project, workers=1, ORCH_ENGINE_RELOAD_DEBOUNCE_S="0.05")
    yield running
    stop_stack(running)


def emit(stack: Stack, region: str, order: str) -> str:
    data = json.dumps({"id": order, "region": region})
    return str(orch_json("emit", "order.paid", "--data", data, "--source", "/shop", env=stack.env)["id"])


def finished_run(stack: Stack, event_id: str) -> dict[str, Any]:
    runs = wait_for(lambda: [r for r in orch_json("runs", "list", "-n", "50", env=stack.env)
                             if r["event"]["id"] == event_id], 20, "the run of the event")

    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = orch_json("runs", "show", runs[0]["id"], env=stack.env)
        return run if run["status"] not in ("running", "queued") else None
    return wait_for(done, 30, "the run to finish", interval_s=0.2)


def reload_json(stack: Stack, *args: str) -> tuple[int, dict[str, Any]]:
    result = orch("reload", "--json", *args, env=stack.env, check=False)
    return result.returncode, json.loads(result.stdout)


def test_an_edited_project_is_taken_up_by_the_running_engine_and_its_workers(stack: Stack) -> None:
    first = finished_run(stack, emit(stack, "eu", "o-1"))
    old = first["ruleset"]
    assert re.fullmatch(r"[0-9a-f]{12}", old) and first["status"] == "succeeded"

    root = stack.project
    (root / "workflows" / "ship.py").write_text(FLOW.format(body="label(pack(order_id))"))
    (root / "rules" / "rules.yaml").write_text(RULES.format(region="us"))
    wait_for(lambda: "(project watcher; was" in stack.procs.log("engine"), 20, "the engine's watcher to publish")
    code, result = reload_json(stack, "--wait", "--timeout", "20")
    assert code == 0, result
    new = result["version"]
    assert new != old and result["timed_out"] is False
    assert [(e["state"], e["version"]) for e in result["engines"]] == [("switched", new)]

    run = finished_run(stack, emit(stack, "us", "o-2"))
    assert run["status"] == "succeeded", run
    assert run["ruleset"] == new and [t["node"] for t in run["tasks"]] == ["pack", "label"]
    assert run["tasks"][1]["result"] == "labelled packed o-2"  # the worker re-imported the changed module
    assert stack.http().get(f"/runs/{run['id']}").json()["ruleset"] == new
    with httpx.Client(base_url=stack.api, timeout=10) as browser:
        browser.cookies.set("orch_session", stack.token, domain="127.0.0.1", path="/ui")
        page = browser.get(f"/ui/runs/{run['id']}")
    assert page.status_code == 200 and f"rule-set version <code>{new}</code>" in page.text
    shown = orch("runs", "show", run["id"], env=stack.env).stdout
    assert f"rule-set version {new}" in shown
    assert orch_json("runs", "show", first["id"], env=stack.env)["ruleset"] == old


def test_an_invalid_change_is_refused_and_the_engine_keeps_its_version(stack: Stack) -> None:
    code, before = reload_json(stack, "--wait", "--timeout", "20")
    assert code == 0, before
    rules = stack.project / "rules" / "rules.yaml"
    good = rules.read_text()
    rules.write_text(good.replace("workflow: ship", "workflow: shipp"))
    try:
        code, result = reload_json(stack)
        assert code == 1 and result["ok"] is False and result["active"] == before["version"]
        (issue,) = result["issues"]
        assert (Path(issue["file"]).name, issue["line"], issue["field"]) == ("rules.yaml", 5, "rules[0].workflow")
        text = orch("reload", env=stack.env, check=False)
        assert text.returncode == 1
        assert "rules.yaml:5: rules[0].workflow: unknown workflow 'shipp'" in text.stderr
        assert "nothing was published; the engines keep running rule-set version" in text.stderr
        validate = orch("validate", env=stack.env, check=False)
        assert validate.returncode == 1 and "rules.yaml:5: rules[0].workflow: unknown workflow 'shipp'" in validate.stderr
        wait_for(lambda: "project change refused" in stack.procs.log("engine"), 20, "the engine to refuse the change")
        metrics = stack.http().get("/metrics").text
        assert re.search(r'orch_project_reloads_total\{result="refused"\} [1-9]', metrics), metrics
        version = before["version"]
        info = 'orch_ruleset_info{active="' + version + '",engine="[^"]+",state="ok",version="' + version + '"} 1.0'
        assert re.search(info.replace("{", r"\{").replace("}", r"\}"), metrics), metrics
    finally:
        rules.write_text(good)
    run = finished_run(stack, emit(stack, "us", "o-3"))
    assert run["ruleset"] == before["version"]


def test_two_engines_with_their_own_copies_agree_and_wait_shows_which_switched(stack: Stack, tmp_path: Path) -> None:
    copy = tmp_path / "second-machine"
    shutil.copytree(stack.project, copy, ignore=shutil.ignore_patterns(".orch", "__pycache__"))
    stack.procs.start("engine-2", "engine", ORCH_PROJECT=str(copy))
    wait_for(lambda: "rule-set version" in stack.procs.log("engine-2"), 20, "the second engine to start")
    code, both = reload_json(stack, "--wait", "--timeout", "20")
    assert code == 0 and [e["state"] for e in both["engines"]] == ["switched", "switched"], both

    changed = FLOW.format(body="pack(order_id)\n    label(order_id)")  # another graph, on the first copy only
    (stack.project / "workflows" / "ship.py").write_text(changed)
    code, result = reload_json(stack, "--wait", "--timeout", "20")
    assert code == 1, result
    states = sorted((e["state"], e["error"] or "") for e in result["engines"])
    assert [s for s, _ in states] == ["behind", "switched"]
    assert "workflow 'ship' is version" in states[0][1] and "deploy the same workflows" in states[0][1]
    text = orch("reload", "--wait", "--timeout", "20", env=stack.env, check=False)
    assert text.returncode == 1 and ": behind (runs " in text.stdout and "cannot load this version" in text.stderr
    run = finished_run(stack, emit(stack, "us", "o-4"))  # the engine that switched processes events meanwhile
    assert run["ruleset"] == result["version"] and [t["node"] for t in run["tasks"]] == ["pack", "label"]

    (copy / "workflows" / "ship.py").write_text(changed)  # the second machine gets the new workflow
    wait_for(lambda: "now running rule-set version " + result["version"] in stack.procs.log("engine-2"), 20,
             "the second engine to switch once its copy has the workflow")
    code, after = reload_json(stack, "--wait", "--timeout", "20")
    assert code == 0 and {e["version"] for e in after["engines"]} == {result["version"]}, after


def test_a_copy_no_engine_has_is_not_published_unless_forced(stack: Stack, tmp_path: Path) -> None:
    code, before = reload_json(stack, "--wait", "--timeout", "20")  # every engine on the stack's own copy
    assert code in (0, 1), before
    copy = tmp_path / "laptop"
    shutil.copytree(stack.project, copy, ignore=shutil.ignore_patterns(".orch", "__pycache__"))
    (copy / "workflows" / "ship.py").write_text(FLOW.format(body="label(label(pack(order_id)))"))

    refused = orch("reload", "--project", str(copy), env=stack.env, check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "no live engine has this copy's workflows" in refused.stderr and "--force" in refused.stderr
    assert "workflow 'ship' is version" in refused.stderr and "engine" in refused.stderr
    code, again = reload_json(stack)  # nothing was published: the stack's own copy is still the active one
    assert code == 0 and again["previous"] == again["version"] == before["version"], again

    forced = orch("reload", "--project", str(copy), "--force", "--json", env=stack.env, check=False)
    published = json.loads(forced.stdout)
    assert forced.returncode == 0 and published["version"] != before["version"] and published["lacking"], published
    wait_for(lambda: "cannot load rule-set version " + published["version"] in stack.procs.log("engine"), 20,
             "the engine to fall behind")
    event = emit(stack, "us", "o-9")  # waits for an engine that can load the active version
    code, restored = reload_json(stack, "--wait", "--timeout", "20")  # the stack's copy again: every engine has it
    assert restored["version"] == before["version"], restored
    assert finished_run(stack, event)["status"] == "succeeded"
