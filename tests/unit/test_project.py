"""Loading a project: every problem reported at once, each with its file, 1-based line and field.

`load_project` imports `workflows.<stem>` from the project and forgets `workflows*` modules each time;
each test below gives its workflow modules their own names all the same.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrator.cli.wiring import load_project
from orchestrator.errors import ConfigError, ConfigIssue

from ..helpers import EXAMPLES

HELLO = '''\
from orchestrator import task, workflow


@task
def greet(name: str, greeting: str = "hi") -> str:
    return f"{greeting} {name}"


@workflow
def hello(name: str, greeting: str = "hi"):
    greet(name, greeting)
'''


def make_project(root: Path, rules: dict[str, str] | None = None, workflows: dict[str, str] | None = None) -> Path:
    for folder, files in (("rules", rules or {}), ("workflows", workflows or {})):
        (root / folder).mkdir(exist_ok=True)
        for name, text in files.items():
            (root / folder / name).write_text(textwrap.dedent(text))
    return root


def issues_of(root: Path) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load_project(root)
    return caught.value.issues


def only_issue(root: Path) -> ConfigIssue:
    (issue,) = issues_of(root)
    return issue


def located(issue: ConfigIssue) -> tuple[str | None, int | None, str | None]:
    """Where an issue points: (file name, line, field)."""
    return (issue.file.name if issue.file else None, issue.line, issue.field)


def test_the_examples_load_cleanly() -> None:
    project = load_project(EXAMPLES)

    assert {"process-new-orders", "welcome-paid-users", "build-nightly-digest"} <= {r.name for r in project.rules}
    assert {"process_order", "welcome_user", "build_digest"} <= set(project.workflows)
    assert {"nightly-digest", "weekly-cleanup"} <= set(project.schedules)
    assert project.hooks and project.watches
    assert {"charge_payment", "reserve_stock", "send_confirmation", "send_welcome"} <= set(project.tasks)
    assert project.queues == ["default"]
    assert [r.name for r in project.index.candidates("user.signup")] == ["welcome-paid-users"]


def test_a_valid_project_loads_its_rules_and_workflows(tmp_path: Path) -> None:
    make_project(tmp_path, {"greet.yaml": """\
        rules:
          - name: greet-users
            type: user.signup
            workflow: hello
            params:
              name: "{{ event.data.name }}"
        """}, {"valid_hello.py": HELLO})

    project = load_project(tmp_path)

    assert [r.name for r in project.rules] == ["greet-users"]
    assert list(project.workflows) == ["hello"] and list(project.tasks) == ["greet"]
    assert project.root == tmp_path.resolve()


def test_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    issue = only_issue(tmp_path / "nowhere")

    assert issue.file == (tmp_path / "nowhere").resolve()
    assert "project directory does not exist" in issue.message


def test_an_empty_directory_is_an_empty_project(tmp_path: Path) -> None:
    project = load_project(tmp_path)

    assert project.rules == [] and project.workflows == {}


def test_a_typo_in_the_workflow_name_suggests_the_right_one(tmp_path: Path) -> None:
    rules = make_project(tmp_path, {"typo.yaml": """\
        rules:
          - name: greet-users
            type: user.signup
            workflow: helo
            params:
              name: x
        """}, {"typo_hello.py": HELLO}) / "rules" / "typo.yaml"

    issue = only_issue(tmp_path)

    assert (issue.file, issue.line, issue.field) == (rules, 4, "rules[0].workflow")
    assert issue.message == "unknown workflow 'helo' (did you mean 'hello'?) (workflows: hello)"
    assert str(issue) == f"{rules}:4: rules[0].workflow: {issue.message}"


def test_an_unknown_rule_field_is_located(tmp_path: Path) -> None:
    make_project(tmp_path, {"field.yaml": """\
        rules:
          - name: greet-users
            type: user.signup
            workflow: hello
            wokflow: hello
            params:
              name: x
        """}, {"field_hello.py": HELLO})

    issue = only_issue(tmp_path)

    assert located(issue) == ("field.yaml", 5, "rules[0].wokflow")
    assert issue.message.startswith("unknown field (did you mean 'workflow'?) (fields: name, type, ")


def test_a_missing_rule_field_points_at_the_rule(tmp_path: Path) -> None:
    make_project(tmp_path, {"missing.yaml": """\
        rules:
          - name: greet-users
            workflow: hello
            params:
              name: x
        """}, {"missing_hello.py": HELLO})

    issue = only_issue(tmp_path)

    assert (issue.line, issue.field, issue.message) == (2, "rules[0].type", "required field is missing")


def test_a_duplicate_yaml_key_is_located(tmp_path: Path) -> None:
    make_project(tmp_path, {"dup.yaml": """\
        rules:
          - name: greet-users
            type: user.signup
            workflow: hello
            type: user.created
        """}, {"dupkey_hello.py": HELLO})

    issue = only_issue(tmp_path)

    assert located(issue) == ("dup.yaml", 5, None)
    assert issue.message == "duplicate key 'type'"


def test_invalid_yaml_is_located(tmp_path: Path) -> None:
    make_project(tmp_path, {"broken.yaml": """\
        rules:
          - name: greet-users
            type: user: signup
        """})

    issue = only_issue(tmp_path)

    assert located(issue) == ("broken.yaml", 3, None)
    assert issue.message.startswith("invalid YAML: ")


def test_a_template_syntax_error_is_located(tmp_path: Path) -> None:
    make_project(tmp_path, {"tmpl.yaml": """\
        rules:
          - name: greet-users
            type: user.signup
            workflow: hello
            params:
              name: "{{ event.data. }}"
        """}, {"tmpl_hello.py": HELLO})

    issue = only_issue(tmp_path)

    assert (issue.line, issue.field) == (6, "rules[0].params.name")
    assert issue.message.startswith("template error: ")


def test_a_template_syntax_error_in_a_list_item_is_located_on_its_line(tmp_path: Path) -> None:
    make_project(tmp_path, {"tmpl_list.yaml": """\
        rules:
          - name: greet-users
            type: user.signup
            workflow: hello
            params:
              name: x
              greeting:
                - "{{ event.data.first }}"
                - "{{ oops( }}"
        """}, {"tmpl_list_hello.py": HELLO})

    issue = only_issue(tmp_path)

    assert issue.field == "rules[0].params.greeting[1]"
    assert issue.line == 9


def test_a_parameter_the_workflow_lacks_is_located(tmp_path: Path) -> None:
    make_project(tmp_path, {"param.yaml": """\
        rules:
          - name: greet-users
            type: user.signup
            workflow: hello
            params:
              name: x
              greting: hey
        """}, {"param_hello.py": HELLO})

    issue = only_issue(tmp_path)

    assert (issue.line, issue.field) == (7, "rules[0].params.greting")
    assert issue.message == ("workflow 'hello' has no parameter 'greting' (did you mean 'greeting'?) "
                             "(parameters: name, greeting)")


def test_a_bad_pattern_is_located_at_its_operator(tmp_path: Path) -> None:
    make_project(tmp_path, {"pattern.yaml": """\
        rules:
          - name: greet-users
            type: user.signup
            workflow: hello
            match:
              data.plan: [pro, team]
              data:
                amount:
                  numeric: [">", "0"]
            params:
              name: x
        """}, {"pattern_hello.py": HELLO})

    issue = only_issue(tmp_path)

    assert (issue.line, issue.field) == (9, "rules[0].match.data.amount.numeric[1]")
    assert issue.message == "the value of > must be a number, not a string"


def test_a_bad_wildcard_in_a_list_is_located(tmp_path: Path) -> None:
    make_project(tmp_path, {"wildcard.yaml": """\
        rules:
          - name: greet-users
            type: user.signup
            workflow: hello
            match:
              subject: [exact, {wildcard: "a**b"}]
            params:
              name: x
        """}, {"wildcard_hello.py": HELLO})

    issue = only_issue(tmp_path)

    assert (issue.line, issue.field) == (6, "rules[0].match.subject[1].wildcard")
    assert issue.message == "consecutive wildcard characters at position 1 in 'a**b'"


def test_a_missing_required_parameter_is_located(tmp_path: Path) -> None:
    make_project(tmp_path, {"required.yaml": """\
        rules:
          - name: greet-users
            type: user.signup
            workflow: hello
            params:
              greeting: hey
        """}, {"required_hello.py": HELLO})

    issue = only_issue(tmp_path)

    assert (issue.line, issue.field) == (5, "rules[0].params")
    assert issue.message == "workflow 'hello' needs parameter 'name'"


def test_a_duplicate_rule_name_is_located_at_the_second_rule(tmp_path: Path) -> None:
    make_project(tmp_path, {"a.yaml": """\
        rules:
          - name: greet-users
            type: user.signup
            workflow: hello
            params: {name: x}
        """, "b.yaml": """\
        rules:
          - name: other
            type: user.signup
            workflow: hello
            params: {name: x}
          - name: greet-users
            type: user.created
            workflow: hello
            params: {name: y}
        """}, {"dupname_hello.py": HELLO})

    issue = only_issue(tmp_path)

    assert located(issue) == ("b.yaml", 6, "rules[1].name")
    assert issue.message == f"rule name 'greet-users' is already used in {tmp_path.resolve() / 'rules' / 'a.yaml'}"


def test_an_unknown_section_is_located(tmp_path: Path) -> None:
    make_project(tmp_path, {"section.yaml": """\
        rules: []
        rule:
          - name: greet-users
        """})

    issue = only_issue(tmp_path)

    assert (issue.line, issue.field) == (2, "rule")
    assert issue.message == "unknown section (did you mean 'rules'?); expected one of: rules, schedules, hooks, watches"


def test_a_module_that_fails_on_import_is_located(tmp_path: Path) -> None:
    module = make_project(tmp_path, workflows={"raising_flows.py": """\
        from orchestrator import task


        RATE = 1 / 0
        """}) / "workflows" / "raising_flows.py"

    issue = only_issue(tmp_path)

    assert (issue.file, issue.line) == (module.resolve(), 4)
    assert issue.message == "ZeroDivisionError: division by zero"


def test_a_module_with_a_syntax_error_is_located(tmp_path: Path) -> None:
    make_project(tmp_path, workflows={"syntax_flows.py": "x = 1\ndef broken(:\n    pass\n"})

    issue = only_issue(tmp_path)

    assert issue.line == 2
    assert issue.message.startswith("SyntaxError: ")


def test_a_workflow_with_a_cycle_is_located(tmp_path: Path) -> None:
    make_project(tmp_path, workflows={"cyclic_flows.py": """\
        from orchestrator import task, workflow


        @task
        def step(value=None):
            return value


        @workflow
        def loop():
            first = step.with_options(name="first", after=["second"])()
            step.with_options(name="second")(first)
        """})

    issue = only_issue(tmp_path)

    assert issue.line in (9, 10), "the line of the decorated workflow"
    assert issue.message in ("workflow 'loop' has a dependency cycle: first -> second -> first",
                             "workflow 'loop' has a dependency cycle: second -> first -> second")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    make_project(tmp_path, {"many.yaml": """\
        rules:
          - name: one
            type: t
            workflow: nothing
          - name: two
            type: t
            workflow: hello
            colour: blue
        """}, {"many_hello.py": HELLO, "many_broken.py": "raise RuntimeError('no')\n"})

    issues = issues_of(tmp_path)

    assert sorted(located(i) for i in issues) == [
        ("many.yaml", 4, "rules[0].workflow"), ("many.yaml", 8, "rules[1].colour"), ("many_broken.py", 1, None)]


def test_modules_starting_with_an_underscore_are_not_loaded(tmp_path: Path) -> None:
    make_project(tmp_path, workflows={"_private_helpers.py": "raise RuntimeError('not imported')\n"})

    assert load_project(tmp_path).workflows == {}


LIMITED = '''\
from orchestrator import task, workflow


@task
def tick() -> None:
    return None


@workflow(concurrency=2)
def limited():
    tick()
'''


def test_rule_controls_that_cannot_apply_are_located(tmp_path: Path) -> None:
    make_project(tmp_path, {"controls.yaml": """\
        rules:
          - name: on-a-limited-workflow
            type: a
            workflow: limited
            concurrency: {key: data.k, limit: 1}
          - name: priority-without-a-limit
            type: b
            workflow: hello
            params: {name: x}
            priority: 10
          - name: bad-key
            type: c
            workflow: hello
            params: {name: x}
            singleton:
              key: "data.k +"
              mode: skip
        """}, {"controls_hello.py": HELLO, "controls_limited.py": LIMITED})

    issues = issues_of(tmp_path)

    assert [located(i) for i in issues] == [("controls.yaml", 5, "rules[0].concurrency"),
                                            ("controls.yaml", 10, "rules[1].priority"),
                                            ("controls.yaml", 16, "rules[2].singleton.key")]
    assert "has its own concurrency limit (2)" in issues[0].message
    assert "give the rule a `concurrency`" in issues[1].message
    assert "not a valid CEL expression" in issues[2].message


def test_a_project_mounted_from_a_configmap_loads_each_file_once(tmp_path: Path) -> None:
    """A ConfigMap volume keeps each file in a hidden `..<timestamp>/` folder and links it from the top."""
    import shutil

    root = tmp_path / "project"
    for folder in ("rules", "workflows"):
        real = root / folder / "..2026_11_30_07_00_00.1"
        shutil.copytree(EXAMPLES / folder, real)
        (root / folder / "..data").symlink_to(real.name)
        for path in real.iterdir():
            (root / folder / path.name).symlink_to(Path("..data") / path.name)

    project = load_project(root)

    assert sorted(r.name for r in project.rules) == sorted(r.name for r in load_project(EXAMPLES).rules)
