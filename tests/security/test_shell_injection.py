"""Rendered values are plain data to a shell task: whole argv elements or environment values, never syntax.

Events whose data is shell syntax (quotes, `;`, backticks, `$(...)`, newlines) go through a real engine
and worker into the three ways a task may pass data to a command: a command string (split like a shell
would, each value one argument), a command list, and `env:` read by a `/bin/sh -c` command. Each command
prints the value back unchanged, and the file the syntax would create never appears.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from orchestrator.cli.wiring import load_project
from orchestrator.errors import ConfigError
from orchestrator.settings import Settings
from orchestrator.workflows.runs import RunStatus

from ..inproc import Stack
from ..projects import make_project

RULES = """
rules:
  - {name: say, type: say.requested, workflow: say, params: {text: "{{ data.text }}"}}
"""

WORKFLOW = """
workflows:
  - name: say
    params: [text]
    tasks:
      - name: split
        shell: "printf %s {{ params.text }}"
      - name: listed
        shell: [printf, "%s", "{{ params.text }}"]
      - name: via_env
        shell: {command: 'printf %s "$TEXT"', shell: true, env: {TEXT: "{{ params.text }}"}}
"""


def payloads(marker: Path) -> list[str]:
    return [f"; touch {marker}", f"`touch {marker}`", f"$(touch {marker})", f"a\ntouch {marker}",
            f"\"; touch {marker}; echo \"", f"x' ; touch {marker} ; echo '", f"&& touch {marker} #",
            f"| tee {marker}", f"> {marker}"]


@pytest.fixture
def stack(r: redis.Redis, settings: Settings, tmp_path: Path) -> Stack:
    root = make_project(tmp_path / "project", rules=RULES)
    (root / "workflows" / "say.yaml").write_text(WORKFLOW)
    project = load_project(root)
    return Stack(r, settings.model_copy(update={"project": project.root}), project)


def test_shell_syntax_in_event_data_is_printed_never_run(stack: Stack, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    texts = payloads(marker)
    events = {stack.emit("say.requested", {"text": text}, source="/test"): text for text in texts}

    stack.drain()

    assert not marker.exists(), "event data became shell syntax"
    for event_id, text in events.items():
        run = stack.run("say", "/test", event_id)
        assert run.status is RunStatus.SUCCEEDED, run.error
        outputs = {name: run.tasks[name].result["stdout"] for name in ("split", "listed", "via_env")}
        assert outputs == {"split": text, "listed": text, "via_env": text}, text


def test_a_shell_true_command_with_data_in_it_is_refused_before_anything_runs(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project", rules=RULES)
    (root / "workflows" / "say.yaml").write_text(WORKFLOW.replace(
        "command: 'printf %s \"$TEXT\"'", "command: 'printf %s {{ params.text }}'"))

    with pytest.raises(ConfigError, match=r"shell: true\) may not hold values .* pass the values in env"):
        load_project(root)
