"""A shell task that runs `orch emit` for the event that starts its own workflow, with real `orch engine`
and `orch worker` processes: its events carry the task's run and node (from the environment the worker
gives the command), so the chain deepens with each run and stops at ORCH_CHAIN_MAX_DEPTH with its cut
recorded, instead of looping forever."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from ..helpers import RedisServer, wait_for
from ..projects import make_project
from .conftest import Stack, orch, orch_json, start_stack, stop_stack

pytestmark = pytest.mark.e2e

RULES = """
    rules:
      - {name: kick-shell-loop, type: shell.loop.start, workflow: shell_again}
      - {name: shell-again, type: shell.loop.again, workflow: shell_again}
"""
WORKFLOW = """
    workflows:
      - name: shell_again
        tasks:
          - name: announce
            shell:
              command: {command}
              env: {{ORCH_REDIS_URL: {url}}}
            timeout_s: 60
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("shellchain")
    project = make_project(root / "project", rules=RULES)
    server = RedisServer()  # first: the workflow passes its URL to the command, as the README says to
    command = [sys.executable, "-m", "orchestrator", "emit", "shell.loop.again", "--source", "/e2e/shell-loop"]
    (project / "workflows" / "again.yaml").write_text(
        textwrap.dedent(WORKFLOW).format(command=json.dumps(command), url=json.dumps(server.url)))
    running = start_stack(root, project, server=server, ORCH_CHAIN_MAX_DEPTH="2")
    yield running
    stop_stack(running)


def runs(stack: Stack) -> list[dict[str, Any]]:
    return list(orch_json("runs", "list", "--workflow", "shell_again", env=stack.env))


def test_a_shell_task_emitting_its_own_trigger_is_cut_at_the_limit(stack: Stack) -> None:
    orch("emit", "shell.loop.start", "--source", "/e2e/shell-loop", env=stack.env)

    (cut,) = wait_for(lambda: [r for r in runs(stack) if r["status"] == "failed"], 60, "the chain to be cut")

    assert cut["error"] == "rule shell-again: chain depth 3 over limit 2" and cut["depth"] == 3
    done = sorted((r for r in runs(stack) if r["status"] == "succeeded"), key=lambda r: r.get("depth", 0))  # 0 is left out
    assert [r.get("depth", 0) for r in done] == [0, 1, 2]
    emitted = orch_json("events", "list", "--type", "shell.loop.again", "--limit", "100", env=stack.env)
    assert sorted((e["orchrun"], e["orchtask"]) for e in emitted) == sorted((r["id"], "announce") for r in done)
    metrics = stack.http().get("/metrics").text
    assert 'orch_chains_cut_total{rule="shell-again"} 1.0' in metrics
