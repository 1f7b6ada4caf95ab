"""④ YAML workflows: `workflows/*.yaml` beside the Python ones, compiled to the same WorkflowSpec.

    workflows:
      - name: nightly_report
        params: [date, {name: region, default: eu}]
        timeout_s: 3600
        tasks:
          - name: fetch
            uses: fetch_orders                                   # a registered python @task
            with: {date: "{{ params.date }}"}                    # its keyword arguments
            retries: {max_retries: 3, backoff_s: 2}
          - name: export
            shell: ["./export.sh", "{{ results.fetch.path }}"]   # or {command, env, cwd, shell}
          - name: notify
            http: {method: POST, url: "https://example.invalid/hook", json: {n: "{{ results.fetch.count }}"}}
            needs: [export]
            when: "params.region == 'eu'"

Each task has exactly one of `uses`, `shell`, `http`, `wait` and `approve` (a step that waits for an event
or a person: yamlwait.py). A string holding `{{ }}` or `{% %}` is a sandboxed
Jinja2 template over `params`, `results` (by task name), `event` and, in a task with `map`, `item`
(yamlcheck.py); every other value is a JSON literal. The order is deduced from the templates: each
`results.<task>` in `with`, `shell`, `http`, `map` and `when` is a dependency, as is each task in `needs`.
The nodes are checked by the same node validator and `build_spec` as Python workflows; every problem
becomes a ConfigIssue naming the file, the line and the field.

This module reads the files and assembles their workflows; one task's fields become a node in
yamltasks.py (whose TASK_KEYS, SHELL_KEYS and HTTP_KEYS are re-exported here).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigIssue, CycleError, WorkflowError, files_inside
from ..yamlpos import YamlError, line_of, load_with_lines
from .dsl import Task
from .spec import TASK_NAME, NodeSpec, ParamSpec, WorkflowSpec, build_spec
from .yamlcheck import Invalid, Parts, Scope, params_of
from .yamltasks import HTTP_KEYS, SHELL_KEYS, TASK_KEYS, TaskCompiler

__all__ = ["HTTP_KEYS", "SHELL_KEYS", "TASK_KEYS", "WORKFLOW_KEYS", "YamlWorkflow", "load_yaml_workflows"]

WORKFLOW_KEYS = ("name", "description", "params", "timeout_s", "concurrency", "tasks")


@dataclass
class YamlWorkflow:
    """A workflow declared in YAML; like a Python `Workflow`, its validated spec and the tasks it uses."""

    name: str
    spec: WorkflowSpec
    tasks: dict[str, Task[Any, Any]]
    file: Path
    line: int | None

    def __repr__(self) -> str:
        return f"<workflow {self.name} ({self.file.name}): {' '.join(n.name for n in self.spec.nodes)}>"


def load_yaml_workflows(folder: Path, tasks: Mapping[str, Task[Any, Any]],
                        taken: Mapping[str, Any]) -> tuple[list[YamlWorkflow], list[ConfigIssue]]:
    """The workflows of `folder/*.yaml` (and .yml) over the registered `tasks`, and every problem found.

    `taken` holds the workflows declared already (in Python): a YAML workflow may not reuse their names.
    Files whose name starts with `_` are skipped, like `_*.py` modules.
    """
    found: list[YamlWorkflow] = []
    issues: list[ConfigIssue] = []
    if not folder.is_dir():
        return found, issues
    known = dict(taken)
    paths, issues = files_inside(folder.parent, sorted(
        p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()))
    for path in (p for p in paths if not p.name.startswith("_")):
        compiler = _Compiler(path, tasks)
        for wf in compiler.load(known):
            known[wf.name] = wf
            found.append(wf)
        issues.extend(compiler.issues)
    return found, issues


class _Compiler(TaskCompiler):
    """One YAML file: its workflows, and the issues found in it (its tasks: TaskCompiler, yamltasks.py)."""

    def load(self, known: dict[str, Any]) -> list[YamlWorkflow]:
        try:
            data, self.lines = load_with_lines(self.path.read_text(encoding="utf-8"))
        except (YamlError, UnicodeDecodeError) as exc:
            self.issues.append(ConfigIssue(self.path, getattr(exc, "line", None), None, str(exc)))
            return []
        if data is None:
            return []
        if not isinstance(data, dict):
            self.issue((), "expected a mapping with a 'workflows:' list")
            return []
        self.unknown_keys((), data, ("workflows",), "section")
        items = data.get("workflows") or []
        if not isinstance(items, list):
            self.issue(("workflows",), "must be a list of workflows")
            return []
        out = []
        for index, item in enumerate(items):
            wf = self.workflow(("workflows", index), item, known)
            if wf is not None:
                known[wf.name] = wf
                out.append(wf)
        return out

    # -- a workflow ------------------------------------------------------------------------------------------

    def workflow(self, parts: Parts, item: Any, known: Mapping[str, Any]) -> YamlWorkflow | None:
        if not isinstance(item, dict):
            self.issue(parts, "a workflow is a mapping with name, params and tasks")
            return None
        before = len(self.issues)
        self.unknown_keys(parts, item, WORKFLOW_KEYS)
        name = self.check(_workflow_name, item, parts, known)
        params = self.check(params_of, item.get("params"), (*parts, "params"))
        timeout_s = self.check(_seconds, item, parts)
        tasks = item.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            self.issue((*parts, "tasks"), "a workflow needs a non-empty list of tasks")
            return None
        names = self.task_names(parts, tasks)
        param_names = None if params is None else {p.name for p in params}
        built = [self.task(name or "?", (*parts, "tasks", i), t, Scope(names, param_names, "map" in t))
                 for i, t in enumerate(tasks) if isinstance(t, dict) and isinstance(t.get("name"), str)]
        if len(self.issues) > before:
            return None
        spec = self.check(_build, name, params, built, timeout_s, parts, names, item.get("concurrency"))
        if spec is None:
            return None
        used = {n.task: self.tasks[n.task] for n in spec.nodes if n.kind == "python"}
        return YamlWorkflow(name, spec, used, self.path, line_of(self.lines, parts))

    def task_names(self, parts: Parts, tasks: list[Any]) -> dict[str, int]:
        names: dict[str, int] = {}
        for i, item in enumerate(tasks):
            here = (*parts, "tasks", i)
            if not isinstance(item, dict):
                self.issue(here, "a task is a mapping with a name and one of uses, shell or http")
            elif not isinstance(item.get("name"), str):
                self.issue((*here, "name"), "every task needs a name (a string)")
            elif item["name"] in names:
                self.issue((*here, "name"), f"task name {item['name']!r} is already used in this workflow "
                                            f"(tasks[{names[item['name']]}])")
            else:
                names[item["name"]] = i
        return names


# -- helpers ---------------------------------------------------------------------------------------------------


def _workflow_name(item: dict[str, Any], parts: Parts, known: Mapping[str, Any]) -> str:
    name = item.get("name")
    if not isinstance(name, str) or not TASK_NAME.match(name):
        raise Invalid((*parts, "name"), "a workflow needs a name: letters, digits, _ . and -")
    if name in known:
        raise Invalid((*parts, "name"), f"workflow name {name!r} is already used {_origin(known[name])}")
    return name


def _origin(workflow: Any) -> str:
    if isinstance(workflow, YamlWorkflow):
        return f"in {workflow.file}:{workflow.line}"
    try:
        return f"by a Python workflow in {inspect.getsourcefile(workflow.fn)}"
    except (AttributeError, TypeError):
        return "by a Python workflow"


def _seconds(item: dict[str, Any], parts: Parts) -> float | None:
    value = item.get("timeout_s")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise Invalid((*parts, "timeout_s"), "timeout_s must be a number of seconds")
    return value


def _build(name: str, params: list[ParamSpec], built: list[NodeSpec | None], timeout_s: float | None,
           parts: Parts, names: dict[str, int], concurrency: Any = None) -> WorkflowSpec:
    """The workflow, checked and ordered by `build_spec`, as Python workflows are."""
    try:
        return build_spec(name, params, [n for n in built if n is not None], timeout_s=timeout_s,
                          concurrency=concurrency)
    except CycleError as exc:
        first = min((n for n in exc.cycle if n in names), key=names.__getitem__)
        raise Invalid((*parts, "tasks", names[first]),
                      f"{exc} (through results.<task> in templates and needs:)") from None
    except WorkflowError as exc:
        field = next((f for f in ("timeout_s", "concurrency") if f in str(exc)), None)
        raise Invalid((*parts, field) if field else parts, str(exc)) from None
