"""④ YAML workflows (`workflows/*.yaml`): the order deduced from templates, one validator with the Python
DSL, and every problem located by file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestrator import run_shell, task, workflow
from orchestrator.cli.wiring import load_project
from orchestrator.errors import ConfigError, ConfigIssue
from orchestrator.workflows.policy import RetryPolicy
from orchestrator.workflows.spec import WorkflowSpec, resolve
from orchestrator.workflows.yamlflows import YamlWorkflow, load_yaml_workflows


@task
def fetch_orders(date: str, region: str = "eu") -> dict[str, Any]:
    return {"path": f"/tmp/{date}.csv", "orders": [{"id": 1}], "count": 1}


@task
def process_order(order: dict[str, Any], strict: bool = False) -> dict[str, Any]:
    return order


@task(queue="io", retries=2)
def summarize(orders: list[Any], note: str = "") -> str:
    return f"{len(orders)} {note}"


TASKS = {t.name: t for t in (fetch_orders, process_order, summarize)}

REPORT = """\
workflows:
  - name: nightly_report
    params: [date, {name: region, default: eu}]
    timeout_s: 3600
    tasks:
      - name: fetch
        uses: fetch_orders
        with: {date: "{{ params.date }}", region: "{{ params.region }}"}
        retries: {max_retries: 3, backoff_s: 2}
        timeout_s: 60
        queue: io
      - name: export
        shell: ["./export.sh", "{{ results.fetch.path }}"]
      - name: per_item
        uses: process_order
        map: "{{ results['fetch'].orders }}"
        with: {order: "{{ item }}"}
        max_parallel: 10
      - name: notify
        http: {method: POST, url: "https://example.invalid/hook", json: {n: "{{ results.fetch.count }}"}}
        needs: [export]
        depends: any_failed
        when: "params.region == 'eu'"
"""


def write(root: Path, text: str, name: str = "flows.yaml") -> Path:
    (root / "workflows").mkdir(parents=True, exist_ok=True)
    path = root / "workflows" / name
    path.write_text(textwrap.dedent(text))
    return path


def compile_ok(tmp_path: Path, text: str) -> YamlWorkflow:
    found, issues = load_yaml_workflows(write(tmp_path, text).parent, TASKS, {})
    assert issues == []
    (wf,) = found
    return wf


def issues_of(tmp_path: Path, text: str, taken: dict[str, Any] | None = None) -> list[ConfigIssue]:
    found, issues = load_yaml_workflows(write(tmp_path, text).parent, TASKS, taken or {})
    assert found == [] and issues
    return issues


def only_issue(tmp_path: Path, text: str) -> tuple[int | None, str | None, str]:
    (issue,) = issues_of(tmp_path, text)
    assert issue.file == tmp_path / "workflows" / "flows.yaml"
    return issue.line, issue.field, issue.message


def one_task(body: str, params: str = "[date]") -> str:
    """A workflow with a valid `fetch` task, then the task `body` (YAML lines at task level, line 8 on)."""
    return ("workflows:\n  - name: flow\n    params: " + params + "\n    tasks:\n"
            "      - name: fetch\n        uses: fetch_orders\n        with: {date: \"{{ params.date }}\"}\n"
            + textwrap.indent(textwrap.dedent(body), "      "))


def upstream_of(spec: WorkflowSpec) -> dict[str, tuple[str, ...]]:
    return {node.name: node.upstream for node in spec.nodes}


# -- what a YAML workflow compiles to ------------------------------------------------------------------------


def test_dependencies_are_deduced_from_the_templates_and_needs(tmp_path: Path) -> None:
    wf = compile_ok(tmp_path, REPORT)

    assert upstream_of(wf.spec) == {"fetch": (), "export": ("fetch",), "per_item": ("fetch",),
                                    "notify": ("export", "fetch")}
    assert wf.spec.levels() == [["fetch"], ["export", "per_item"], ["notify"]]
    assert [p.name for p in wf.spec.params] == ["date", "region"] and wf.spec.params[1].default == "eu"
    assert wf.spec.timeout_s == 3600 and wf.tasks == {"fetch_orders": fetch_orders, "process_order": process_order}
    assert (wf.name, wf.line, wf.file.name) == ("nightly_report", 2, "flows.yaml")


def test_options_become_node_options(tmp_path: Path) -> None:
    nodes = {n.name: n for n in compile_ok(tmp_path, REPORT).spec.nodes}

    fetch = nodes["fetch"]
    assert (fetch.kind, fetch.task, fetch.queue, fetch.timeout_s) == ("python", "fetch_orders", "io", 60)
    assert fetch.retry == RetryPolicy(max_retries=3, backoff_s=2)
    assert (nodes["export"].kind, nodes["export"].task, nodes["export"].queue) == ("shell", "shell", "default")
    per_item = nodes["per_item"]
    assert per_item.map_over == {"$tmpl": "{{ results['fetch'].orders }}", "refs": ["fetch"]}
    assert per_item.max_parallel == 10 and per_item.kwargs == {"order": {"$tmpl": "{{ item }}", "refs": []}}
    notify = nodes["notify"]
    assert (notify.kind, notify.depends, notify.when) == ("http", "any_failed", "params.region == 'eu'")
    assert notify.kwargs == {"method": {"$lit": "POST"}, "url": {"$lit": "https://example.invalid/hook"},
                             "json": {"$dict": {"n": {"$tmpl": "{{ results.fetch.count }}", "refs": ["fetch"]}}}}


def test_strings_without_templates_stay_literals(tmp_path: Path) -> None:
    wf = compile_ok(tmp_path, one_task("""\
        - name: sum
          uses: summarize
          with:
            orders: [1, "{{ results.fetch.count }}", {a: "{% if params.date %}x{% endif %}"}]
            note: "no {braces} here"
        - name: count
          shell: {command: "wc -l orders.csv", env: {N: 3, WHEN: "{{ params.date }}"}, cwd: /tmp}
        """))
    nodes = {n.name: n for n in wf.spec.nodes}

    assert nodes["sum"].kwargs == {
        "orders": {"$list": [{"$lit": 1}, {"$tmpl": "{{ results.fetch.count }}", "refs": ["fetch"]},
                             {"$dict": {"a": {"$tmpl": "{% if params.date %}x{% endif %}", "refs": []}}}]},
        "note": {"$lit": "no {braces} here"}}
    assert nodes["sum"].upstream == ("fetch",) and nodes["sum"].queue == "io"  # @task(queue=..., retries=...)
    assert nodes["sum"].retry == RetryPolicy(max_retries=2)
    assert nodes["count"].kwargs == {"command": {"$lit": "wc -l orders.csv"}, "cwd": {"$lit": "/tmp"},
                                     "env": {"$dict": {"N": {"$lit": 3},
                                                       "WHEN": {"$tmpl": "{{ params.date }}", "refs": []}}}}
    assert nodes["count"].upstream == ()


def test_templates_resolve_over_params_results_event_and_item(tmp_path: Path) -> None:
    wf = compile_ok(tmp_path, one_task("""\
        - name: each
          uses: process_order
          map: "{{ results.fetch.orders }}"
          with: {order: {id: "{{ item.id }}", source: "{{ event.source }}"}, strict: "{{ params.date == 'x' }}"}
        - name: echo
          shell: [echo, "{{ results.fetch.count }}", 7]
          retries: 1
        """))
    each, echo = wf.spec.node("each"), wf.spec.node("echo")
    results = {"fetch": {"orders": [{"id": 5}], "count": 1}, "$event": {"source": "/shop"}, "$item": {"id": 5}}

    assert resolve(each.map_over, {"date": "x"}, results) == [{"id": 5}]
    assert {k: resolve(t, {"date": "x"}, results) for k, t in each.kwargs.items()} == {
        "order": {"id": 5, "source": "/shop"}, "strict": True}
    assert resolve(echo.kwargs["command"], {}, results) == ["echo", "1", "7"]  # command items are always text
    assert echo.retry == RetryPolicy(max_retries=1)


def test_results_read_by_when_are_dependencies_too(tmp_path: Path) -> None:
    wf = compile_ok(tmp_path, one_task("""\
        - {name: a, shell: echo}
        - {name: b, shell: echo, when: "{{ results.fetch.count > 0 and results['a'].exit_code == 0 }}"}
        """))

    assert wf.spec.node("b").upstream == ("a", "fetch")
    assert wf.spec.node("b").when == "{{ results.fetch.count > 0 and results['a'].exit_code == 0 }}"


def test_a_mapped_task_without_item_gets_it_as_its_first_parameter(tmp_path: Path) -> None:
    wf = compile_ok(tmp_path, one_task("""\
        - name: each
          uses: process_order
          map: [{id: 1}, {id: 2}]
          with: {strict: true}
        """))

    assert wf.spec.node("each").kwargs == {"strict": {"$lit": True}, "order": {"$item": True, "path": []}}
    assert wf.spec.node("each").map_over == {"$lit": [{"id": 1}, {"id": 2}]}


def test_a_yaml_workflow_and_the_same_python_workflow_give_the_same_graph(tmp_path: Path) -> None:
    @workflow
    def nightly_report(date: str, region: str = "eu") -> None:
        fetched = fetch_orders(date, region)
        export = run_shell("export", ["./export.sh", fetched["path"]])
        process_order.with_options(name="per_item", after=[export]).map(fetched["orders"])
        summarize.with_options(name="sum", when="params.region == 'eu'")(fetched["orders"])

    yaml_wf = compile_ok(tmp_path, """\
        workflows:
          - name: nightly_report
            params: [date, {name: region, default: eu}]
            tasks:
              - {name: fetch_orders, uses: fetch_orders, with: {date: "{{ params.date }}", region: "{{ params.region }}"}}
              - {name: export, shell: ["./export.sh", "{{ results.fetch_orders.path }}"]}
              - {name: per_item, uses: process_order, map: "{{ results.fetch_orders.orders }}", needs: [export]}
              - {name: sum, uses: summarize, with: {orders: "{{ results.fetch_orders.orders }}"},
                 when: "params.region == 'eu'"}
        """)

    python, yaml = nightly_report.spec, yaml_wf.spec
    assert [(n.name, n.upstream, n.kind, n.task, n.queue, n.retry, n.when) for n in yaml.nodes] == \
        [(n.name, n.upstream, n.kind, n.task, n.queue, n.retry, n.when) for n in python.nodes]
    assert yaml.levels() == python.levels() == [["fetch_orders"], ["export", "sum"], ["per_item"]]
    assert yaml.params == python.params


def test_project_loading_registers_yaml_workflows_for_rules(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "rules:\n  - {name: r, type: t, workflow: nightly_report, params: {date: '{{ data.date }}'}}\n")
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "yaml_tasks.py").write_text(
        "from orchestrator import task\n\n@task\ndef fetch_orders(date: str, region: str = 'eu') -> dict:\n"
        "    return {}\n\n@task\ndef process_order(order: dict) -> dict:\n    return order\n")
    write(tmp_path, REPORT, "report.yml")

    project = load_project(tmp_path)

    assert list(project.workflows) == ["nightly_report"] and [r.name for r in project.rules] == ["r"]
    assert project.queues == ["default", "io"]
    assert project.workflows["nightly_report"].tasks == {"fetch_orders": project.tasks["fetch_orders"],
                                                         "process_order": project.tasks["process_order"]}


# -- located errors ------------------------------------------------------------------------------------------


def test_an_unknown_task_in_uses_suggests_the_right_one(tmp_path: Path) -> None:
    assert only_issue(tmp_path, one_task("- {name: p, uses: proces_order}\n")) == (
        8, "workflows[0].tasks[1].uses", "unknown task 'proces_order' (did you mean 'process_order'?) "
                                         "(tasks: fetch_orders, process_order, summarize)")


def test_an_unknown_result_reference_is_located(tmp_path: Path) -> None:
    line, field, message = only_issue(tmp_path, one_task("""\
        - name: sum
          uses: summarize
          with: {orders: "{{ results.fecth.orders }}"}
        """))

    assert (line, field) == (10, "workflows[0].tasks[1].with.orders")
    assert message == "unknown task results.fecth (did you mean 'fetch'?) (tasks of this workflow: fetch, sum)"


@pytest.mark.parametrize(("body", "where", "message"), [
    ("- {name: e, shell: echo, needs: [fetch, nope]}\n", ("tasks[1].needs[1]", 8), "unknown task nope"),
    ("- {name: e, shell: \"echo {{ results }}\"}\n", ("tasks[1].shell", 8), "results is read by task name"),
    ("- {name: e, shell: \"echo {{ results[params.date] }}\"}\n", ("tasks[1].shell", 8),
     "results is read by task name"),
    ("- {name: e, shell: \"echo {{ data.x }}\"}\n", ("tasks[1].shell", 8),
     "unknown name 'data' (event data is event.data)"),
    ("- {name: e, shell: \"echo {{ item }}\"}\n", ("tasks[1].shell", 8), "item is only defined in a task with map:"),
    ("- {name: e, shell: \"echo {{ params.dat }}\"}\n", ("tasks[1].shell", 8),
     "unknown parameter 'dat' (did you mean 'date'?)"),
    ("- {name: e, shell: \"echo {{ params.date \"}\n", ("tasks[1].shell", 8), "template error:"),
    ("- {name: e, shell: echo, when: \"item == 'x'\"}\n", ("tasks[1].when", 8),
     "item is only defined in a task with map:"),
    ("- {name: e, shell: echo, when: \"params.date ==\"}\n", ("tasks[1].when", 8), "invalid expression"),
    ("- {name: e, shell: echo, max_parallel: 3}\n", ("tasks[1].max_parallel", 8), "max_parallel needs map_over"),
    ("- {name: e, shell: echo, timeout_s: -1}\n", ("tasks[1].timeout_s", 8), "timeout_s must be positive"),
    ("- {name: e, shell: echo, timeout_s: soon}\n", ("tasks[1].timeout_s", 8), "timeout_s must be a number"),
    ("- {name: e, shell: echo, queue: 'a b'}\n", ("tasks[1].queue", 8), "invalid queue name 'a b'"),
    ("- {name: 'e e', shell: echo}\n", ("tasks[1].name", 8), "'e e' is not a valid task name"),
    ("- {name: fetch, shell: echo}\n", ("tasks[1].name", 8), "task name 'fetch' is already used"),
    ("- {name: e, shell: [echo, {a: 1}]}\n", ("tasks[1].shell", 8), "a shell command is a non-empty string"),
    ("- {name: e, shell: {command: echo, cmd: x}}\n", ("tasks[1].shell.cmd", 8), "unknown shell option"),
    ("- {name: e, shell: {command: 'echo {{ params.date }}', shell: true}}\n", ("tasks[1].shell", 8),
     "a command run by /bin/sh (shell: true) may not hold values"),
    ("- {name: e, shell: ['{{ params.date }}', x]}\n", ("tasks[1].shell", 8), "the program to run"),
    ("- {name: e, shell: '{{ params.date }} x'}\n", ("tasks[1].shell", 8), "the program to run"),
    ("- {name: e, shell: {command: env, env: '{{ params.date }}'}}\n", ("tasks[1].shell", 8),
     "env must be a mapping written out"),
    ("- {name: e, shell: \"echo 'unbalanced {{ params.date }}\"}\n", ("tasks[1].shell", 8),
     "cannot split the command like a shell would: No closing quotation"),
    ("- {name: e, shell: echo, with: {a: 1}}\n", ("tasks[1].with", 8), "with: passes arguments to a uses: task"),
    ("- {name: e, http: {url: ftp://x}}\n", ("tasks[1].http.url", 8), "http needs a url"),
    ("- {name: e, http: {url: 'https://x', method: FETCH}}\n", ("tasks[1].http.method", 8), "method must be one of"),
    ("- {name: e, uses: summarize, with: {orders: [], not: 1}}\n", ("tasks[1].with.not", 8),
     "task 'summarize' has no parameter 'not' (did you mean 'note'?)"),
    ("- {name: e, uses: process_order, with: {order: 2024-01-01}}\n", ("tasks[1].with.order", 8),
     "not a JSON value: date is not JSON"),
    ("- {name: e, uses: summarize, map: '{{ params.date }}', with: {note: '{{ item }}'}}\n", ("tasks[1].with", 8),
     "task 'summarize' needs parameter 'orders'"),
    ("- {name: e, uses: process_order, map: 'not a template'}\n", ("tasks[1].map", 8), "map: is a list"),
    ("- {name: e, uses: process_order, map: [1], with: {order: 1}}\n", ("tasks[1].map", 8),
     "pass the mapped item to a parameter"),
])
def test_problems_in_a_task_are_located(tmp_path: Path, body: str, where: tuple[str, int], message: str) -> None:
    line, field, text = only_issue(tmp_path, one_task(body))

    assert (field, line) == (f"workflows[0].{where[0]}", where[1])
    assert message in text


def test_a_cycle_is_located_at_its_first_task(tmp_path: Path) -> None:
    line, field, message = only_issue(tmp_path, one_task("""\
        - {name: a, shell: "echo {{ results.b.stdout }}"}
        - {name: b, shell: echo, needs: [a]}
        """))

    assert (line, field) == (8, "workflows[0].tasks[1]")
    assert "workflow 'flow' has a dependency cycle: " in message and "results.<task> in templates and needs:" in message


def test_two_kinds_at_once(tmp_path: Path) -> None:
    assert only_issue(tmp_path, one_task("- {name: e, uses: summarize, shell: echo}\n")) == (
        8, "workflows[0].tasks[1].shell", "a task has exactly one of uses, shell, http, wait or approve (this one has uses and shell)")
    assert only_issue(tmp_path, one_task("- {name: e}\n"))[1:] == (
        "workflows[0].tasks[1]", "a task has exactly one of uses, shell, http, wait or approve (this one has none)")


def test_an_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    line, field, message = only_issue(tmp_path, one_task("""\
        - name: e
          shell: echo
          need: [fetch]
        """))

    assert (line, field) == (10, "workflows[0].tasks[1].need")
    assert message.startswith("unknown field (did you mean 'needs'?) (expected: name, description, uses,")


def test_bad_retries_and_depends(tmp_path: Path) -> None:
    issues = issues_of(tmp_path, one_task("""\
        - {name: a, shell: echo, retries: {max_retries: 2, backof_s: 1}}
        - {name: b, shell: echo, retries: -1}
        - {name: c, shell: echo, depends: any_failes}
        """))

    assert [(i.line, i.field) for i in issues] == [(8, "workflows[0].tasks[1].retries"),
                                                   (9, "workflows[0].tasks[2].retries"),
                                                   (10, "workflows[0].tasks[3].depends")]
    assert issues[0].message.startswith("unknown retry option backof_s")
    assert issues[1].message == "retries must be between 0 and 1000, not -1"
    assert issues[2].message == ("depends must be one of all_succeeded, all_finished, any_failed, not 'any_failes' "
                                 "(did you mean 'any_failed'?)")


def test_a_missing_required_parameter(tmp_path: Path) -> None:
    assert only_issue(tmp_path, one_task("- {name: s, uses: summarize, with: {note: hi}}\n")) == (
        8, "workflows[0].tasks[1].with", "task 'summarize' needs parameter 'orders'")
    assert only_issue(tmp_path, one_task("- {name: s, uses: summarize}\n"))[1] == "workflows[0].tasks[1].uses"


def test_workflow_level_problems(tmp_path: Path) -> None:
    issues = issues_of(tmp_path, """\
        workflow: []
        workflows:
          - name: a
            params: [date, date]
            tasks: [{name: t, shell: echo}]
          - name: b
            timeout_s: 0
            tasks: [{name: t, shell: echo}]
          - name: c
            tasks: []
          - {name: a, tasks: [{name: t, shell: echo}], params: [{name: x, defualt: 1}]}
        """)

    assert [(i.line, i.field, i.message.split(" (")[0]) for i in issues] == [
        (1, "workflow", "unknown section"),
        (4, "workflows[0].params[1]", "parameter 'date' is declared twice"),
        (7, "workflows[1].timeout_s", "workflow 'b': timeout_s must be positive"),
        (10, "workflows[2].tasks", "a workflow needs a non-empty list of tasks"),
        (11, "workflows[3].params[0].defualt", "unknown field"),
    ]


def test_a_workflow_name_is_unique_across_python_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "dup_flows.py").write_text(
        "from orchestrator import task, workflow\n\n@task\ndef fetch_orders(date: str) -> dict:\n    return {}\n\n"
        "@workflow\ndef nightly_report(date: str):\n    fetch_orders(date)\n")
    yaml_path = write(tmp_path, "workflows:\n  - name: nightly_report\n    tasks: [{name: t, shell: echo}]\n")
    write(tmp_path, "workflows:\n  - {name: again, tasks: [{name: t, shell: echo}]}\n", "a.yaml")
    write(tmp_path, "workflows:\n  - {name: again, tasks: [{name: t, shell: echo}]}\n", "b.yaml")

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    by_file = {i.file.name if i.file else None: i for i in caught.value.issues}
    assert len(caught.value.issues) == 2 and set(by_file) == {"flows.yaml", "b.yaml"}
    assert (by_file["flows.yaml"].file, by_file["flows.yaml"].line) == (yaml_path, 2)
    assert by_file["flows.yaml"].field == "workflows[0].name"
    assert by_file["flows.yaml"].message == ("workflow name 'nightly_report' is already used by a Python workflow "
                                             f"in {tmp_path / 'workflows' / 'dup_flows.py'}")
    assert by_file["b.yaml"].message == f"workflow name 'again' is already used in {tmp_path / 'workflows' / 'a.yaml'}:2"


def test_invalid_yaml_is_located(tmp_path: Path) -> None:
    (issue,) = issues_of(tmp_path, "workflows:\n  - name: [\n")

    assert issue.line is not None and issue.message.startswith("invalid YAML")


def test_a_command_string_with_templates_keeps_each_value_in_one_argument(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "w.yaml").write_text(textwrap.dedent("""\
        workflows:
          - name: greet
            params: [who]
            tasks:
              - name: hello
                shell: "printf '%s|' 'hi there' {{ params.who }} done"
              - name: quiet
                shell: {command: 'printf %s "$WHO"', shell: true, env: {WHO: "{{ params.who }}"}}
        """))
    spec = load_yaml_workflows(tmp_path / "workflows", {}, {})[0][0].spec

    hello = spec.node("hello").kwargs["command"]
    assert [list(t) for t in hello["$list"]] == [["$lit"], ["$lit"], ["$lit"], ["$tmpl", "refs"], ["$lit"]]
    assert [t.get("$lit") for t in hello["$list"]] == ["printf", "%s|", "hi there", None, "done"]
    assert spec.node("quiet").kwargs["command"] == {"$lit": 'printf %s "$WHO"'}
