"""A workflow written in YAML (uses + shell + map + when), started by an emitted event and run by real
`orch engine` and `orch worker` processes; `orch validate` shows it like a Python workflow."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from ..helpers import wait_for
from ..projects import make_project
from .conftest import Stack, orch, orch_json, start_stack, stop_stack

TASKS = '''\
from orchestrator import task


@task
def split(text: str, sep: str = " ") -> list:
    return text.split(sep)


@task
def shout(word: str, suffix: str = "") -> str:
    return word.upper() + suffix


@task
def join(words: list, prefix: str) -> str:
    return prefix + " ".join(words)
'''

WORKFLOW = """\
workflows:
  - name: yaml_words
    params: [text, {name: suffix, default: "!"}]
    timeout_s: 60
    tasks:
      - name: words
        uses: split
        with: {text: "{{ params.text }}"}
      - name: loud
        uses: shout
        map: "{{ results.words }}"
        with: {word: "{{ item }}", suffix: "{{ params.suffix }}"}
        max_parallel: 2
        retries: {max_retries: 2, backoff_s: 0.1}
      - name: count
        shell: [echo, "{{ results.words | length }}", "words from {{ event.source }}"]
        timeout_s: 20
      - name: done
        uses: join
        with: {words: "{{ results.loud }}", prefix: "{{ event.data.who }}: {{ results.count.stdout | trim }} - "}
      - name: never
        shell: ["false"]
        needs: [done]
        when: "params.suffix == '?'"
"""

RULES = """\
rules:
  - name: yaml-words
    type: test.words
    workflow: yaml_words
    params: {text: "{{ data.text }}"}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("yamlflows")
    project = make_project(root / "project", rules=RULES, workflows={"words": TASKS})
    (project / "workflows" / "words.yaml").write_text(textwrap.dedent(WORKFLOW))
    running = start_stack(root, project, workers=1)
    yield running
    stop_stack(running)


def run_of(stack: Stack, event_id: str) -> dict[str, Any]:
    runs = wait_for(lambda: [r for r in orch_json("runs", "list", "-n", "50", env=stack.env)
                             if r["event"]["id"] == event_id], 20, "the run of the event")

    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = orch_json("runs", "show", runs[0]["id"], env=stack.env)
        return run if run["status"] != "running" else None
    return wait_for(done, 30, "the run to finish", interval_s=0.2)


def test_validate_shows_the_yaml_workflow_like_a_python_one(stack: Stack) -> None:
    out = orch("validate", env=stack.env).stdout

    assert "1 rules, 1 workflows, 3 tasks" in out
    assert "  workflow yaml_words: words -> loud, count -> done -> never" in out


def test_an_event_runs_the_yaml_workflow_with_rendered_templates(stack: Stack) -> None:
    data = json.dumps({"text": "orch runs yaml", "who": "ada"})
    emitted = orch_json("emit", "test.words", "--data", data, "--source", "/e2e/yaml", env=stack.env)

    run = run_of(stack, emitted["id"])

    assert run["status"] == "succeeded", run
    tasks = {t["node"]: t for t in run["tasks"]}
    assert tasks["words"]["result"] == ["orch", "runs", "yaml"]
    assert tasks["loud"]["result"] == ["ORCH!", "RUNS!", "YAML!"]
    assert tasks["count"]["result"]["stdout"] == "3 words from /e2e/yaml\n"
    assert tasks["count"]["upstream"] == ["words"] and tasks["done"]["upstream"] == ["count", "loud"]
    assert tasks["done"]["result"] == "ada: 3 words from /e2e/yaml - ORCH! RUNS! YAML!"
    assert tasks["never"]["state"] == "skipped"
