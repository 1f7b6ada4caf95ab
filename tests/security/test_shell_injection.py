"""Rendered values are plain data to a shell task: whole argv elements or environment values, never syntax.

Events whose data is shell syntax (quotes, `;`, backticks, `$(...)`, newlines) go through a real engine
and worker into the three ways a task may pass data to a command: a command string (split like a shell
would, each value one argument), a command list, and `env:` read by a `/bin/sh -c` command. Each command
prints the value back unchanged, and the file the syntax would create never appears.
"""

from __future__ import annotations

import re
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


def load_task(tmp_path: Path, task: str) -> None:
    """Load a project whose `say` workflow has the one shell task `task` (YAML, under `tasks:`)."""
    root = make_project(tmp_path / "project", rules=RULES)
    (root / "workflows" / "say.yaml").write_text(
        "workflows:\n  - name: say\n    params: [text]\n    tasks:\n      - name: t\n        " + task + "\n")
    load_project(root)


@pytest.mark.parametrize(("task", "says"), [
    # data as the code a shell or an interpreter runs, however the command is written
    ("shell: \"sh -c '{{ params.text }}'\"", "`sh` runs code"),
    ("shell: [bash, -c, '{{ params.text }}']", "`bash` runs code"),
    ("shell: [bash, -ec, '{{ params.text }}']", "`bash` runs code"),
    ("shell: [/usr/bin/python3, -c, '{{ params.text }}']", "`python3` runs code"),
    ("shell: [node, -e, '{{ params.text }}']", "`node` runs code"),
    ("shell: [perl, '{{ params.text }}']", "`perl` runs code"),
    ("shell: [awk, '{{ params.text }}', /etc/hosts]", "`awk` runs code"),
    ("shell: [bash, '{{ params.text }}', -c, 'echo hi']", "`bash` runs code"),
    # data as a program, through a program that runs its arguments
    ("shell: [env, '{{ params.text }}']", "`env` runs its arguments as a command"),
    ("shell: [/usr/bin/env, 'A=1', '{{ params.text }}']", "`env` runs its arguments as a command"),
    ("shell: [xargs, '{{ params.text }}']", "`xargs` runs its arguments as a command"),
    ("shell: [ssh, host.example, '{{ params.text }}']", "`ssh` runs its arguments as a command"),
    ("shell: [timeout, '5', '{{ params.text }}']", "`timeout` runs its arguments as a command"),
    # data choosing where a relative program is found, or what every program loads
    ("shell: {command: [./run.sh], cwd: '{{ params.text }}'}", "cwd must be written out"),
    ("shell: {command: [ls], env: {PATH: '{{ params.text }}'}}", "env.PATH changes which program runs"),
    ("shell: {command: [ls], env: {LD_PRELOAD: '{{ params.text }}'}}", "env.LD_PRELOAD changes"),
    ("shell: {command: [ls], env: {BASH_ENV: '{{ params.text }}'}}", "env.BASH_ENV changes"),
    ("shell: '{{ params.text }} --version'", "the program to run"),
    # options that take a value do not end the options (a review's bypasses)
    ("shell: [bash, -o, pipefail, -c, '{{ params.text }}']", "`bash` runs code"),
    ("shell: [awk, -F, ',', '{{ params.text }}']", "`awk` runs code"),
    ("shell: [python3, -W, ignore, -c, '{{ params.text }}']", "`python3` runs code"),
    ("shell: [perl, -I, lib, -e, '{{ params.text }}']", "`perl` runs code"),
    ("shell: [sed, -e, s/a/b/, -e, '{{ params.text }}']", "`sed` runs code"),
    ("shell: [sed, s/a/b/, -e, '{{ params.text }}']", "`sed` runs code"),
    ("shell: [awk, -v, 'n={{ params.text }}', '{print n}']", "`awk` runs code"),
    # versioned names, and programs with options that run code
    ("shell: [lua5.4, -e, '{{ params.text }}']", "`lua5.4` runs code"),
    ("shell: [php8.2, -r, '{{ params.text }}']", "`php8.2` runs code"),
    ("shell: [find, ., -exec, '{{ params.text }}', ;]", "`find -exec` runs its value as code"),
    ("shell: [git, -c, '{{ params.text }}', status]", "`git -c` runs its value as code"),
    ("shell: [npx, '{{ params.text }}']", "`npx` runs its arguments as a command"),
    ("shell: {command: [git, status], env: {GIT_CONFIG_PARAMETERS: '{{ params.text }}'}}", "env.GIT_CONFIG_PARAMETERS"),
    ("shell: {command: [java, -jar, x.jar], env: {_JAVA_OPTIONS: '{{ params.text }}'}}", "env._JAVA_OPTIONS"),
    ("shell: {command: [python3, x.py], env: {PYTHONINSPECT: '{{ params.text }}'}}", "env.PYTHONINSPECT"),
    # a relative script chosen through cwd
    ("shell: {command: [bash, run.sh], cwd: '{{ params.text }}'}", "'run.sh' is a relative path"),
    ("shell: {command: [python3, tools/x.py], cwd: '{{ params.text }}'}", "'tools/x.py' is a relative path"),
    # shell: true, with the data in env: but the variable used as a program or as code
    ("shell: {command: '\"$PROG\" --version', shell: true, env: {PROG: '{{ params.text }}'}}", "the program to run"),
    ("shell: {command: 'bash -c \"$CODE\"', shell: true, env: {CODE: '{{ params.text }}'}}", "`bash` runs code"),
    ("shell: {command: 'eval \"$CODE\"', shell: true, env: {CODE: '{{ params.text }}'}}", "`eval` runs its arguments"),
    ("shell: {command: 'python3 -c \"${CODE}\"', shell: true, env: {CODE: '{{ params.text }}'}}", "`python3` runs code"),
    ("shell: {command: 'echo hi | \"$PROG\"', shell: true, env: {PROG: '{{ params.text }}'}}", "the program to run"),
])
def test_data_that_could_become_code_or_a_program_is_refused_when_the_project_loads(tmp_path: Path, task: str,
                                                                                    says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_task(tmp_path, task)


@pytest.mark.parametrize("task", [
    "shell: [bash, -c, 'printf %s \"$1\"', _, '{{ params.text }}']",  # $1 of a written-out script
    "shell: [python3, -u, script.py, '{{ params.text }}']",
    "shell: [sh, -c, 'printf %s \"$TEXT\"']",
    "shell: {command: [bash, -c, 'printf %s \"$TEXT\"'], env: {TEXT: '{{ params.text }}'}}",
    "shell: [env, A=1, printf, '%s', hello]",
    "shell: {command: [./run.sh, '{{ params.text }}'], cwd: /srv/tools}",
    "shell: {command: [ls, '{{ params.text }}'], cwd: '{{ params.text }}'}",
    "shell: [grep, -r, '{{ params.text }}', /srv/logs]",
    "shell: [bash, -o, pipefail, -c, 'printf %s \"$1\"', _, '{{ params.text }}']",
    "shell: [sed, -e, s/a/b/, '{{ params.text }}']",  # a file for sed to read
    "shell: [find, '{{ params.text }}', -name, '*.csv']",
    "shell: [git, -C, /srv/repo, log, --, '{{ params.text }}']",
    "shell: {command: [bash, /srv/tools/run.sh], cwd: '{{ params.text }}'}",
    "shell: {command: 'printf %s \"$TEXT\" | tee -a log > \"$OUT\"', shell: true, "
    "env: {TEXT: '{{ params.text }}', OUT: '{{ params.text }}.txt'}}",
])
def test_data_as_arguments_stays_allowed(tmp_path: Path, task: str) -> None:
    load_task(tmp_path, task)


def test_the_python_dsl_has_the_same_rules(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project", rules=RULES, workflows={"say": """
        from orchestrator import run_shell, workflow

        @workflow
        def say(text: str):
            run_shell("t", ["bash", "-c", text])
    """})

    with pytest.raises(ConfigError, match=re.escape("`bash` runs code")):
        load_project(root)


@pytest.mark.parametrize("text", ["touch", "'; touch x; '"])
def test_a_bash_script_given_data_as_its_argument_prints_it(stack: Stack, tmp_path: Path, text: str) -> None:
    root = make_project(tmp_path / "p2", rules=RULES)
    (root / "workflows" / "say.yaml").write_text(
        "workflows:\n  - name: say\n    params: [text]\n    tasks:\n      - name: t\n"
        "        shell: [bash, -c, 'printf %s \"$1\"', _, '{{ params.text }}']\n")
    project = load_project(root)
    other = Stack(stack.r, stack.settings.model_copy(update={"project": project.root}), project)
    event = other.emit("say.requested", {"text": text}, source="/test")
    other.drain()
    run = other.run("say", "/test", event)
    assert run.status is RunStatus.SUCCEEDED and run.tasks["t"].result["stdout"] == text


@pytest.mark.parametrize(("text", "refused"), [("--upload-pack=touch /tmp/x", True), ("-n", True),
                                               ("plain", False), ("a-b", False)])
def test_a_value_from_data_that_would_be_read_as_an_option_is_refused_when_the_task_runs(
        stack: Stack, tmp_path: Path, text: str, refused: bool) -> None:
    root = make_project(tmp_path / "p3", rules=RULES)
    (root / "workflows" / "say.yaml").write_text(
        "workflows:\n  - name: say\n    params: [text]\n    tasks:\n"
        "      - name: bare\n        shell: [printf, '%s', '{{ params.text }}']\n"
        "      - name: ended\n        shell: [printf, '%s', --, '{{ params.text }}']\n")
    project = load_project(root)
    other = Stack(stack.r, stack.settings.model_copy(update={"project": project.root}), project)
    event = other.emit("say.requested", {"text": text}, source="/test")
    other.drain()
    run = other.run("say", "/test", event)
    bare, ended = run.tasks["bare"], run.tasks["ended"]
    if refused:
        assert str(bare.state) == "failed" and bare.error_type == "InvalidTaskOptions"
        assert "starts with '-' and would be read as an option" in (bare.error or "")
    else:
        assert str(bare.state) == "succeeded" and bare.result["stdout"] == text
    assert str(ended.state) == "succeeded", "after a written-out --, it is only an argument"
