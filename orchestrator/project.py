"""An automation project: a directory with `rules/*.yaml` and Python `workflows/*.py`.

`load_project(path)` imports the workflow modules (collecting their `@task`s and `@workflow`s), loads
and checks every rule against them, and reports every problem at once as a ConfigError whose issues
name the file, the line and the field.
"""

from __future__ import annotations

import difflib
import importlib
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import ConfigError, ConfigIssue, OrchestratorError
from .rules.match import RuleIndex
from .rules.model import Rule, RuleConfig
from .rules.templates import TemplateCompileError
from .workflows.dsl import Task, Workflow, collect
from .yamlpos import YamlError, line_of, load_with_lines

__all__ = ["Project", "load_project"]

RULES_DIR = "rules"
WORKFLOWS_DIR = "workflows"
_SECTIONS = ("rules",)


@dataclass
class Project:
    """Everything loaded from a project directory."""

    root: Path
    rules: list[Rule] = field(default_factory=list)
    workflows: dict[str, Workflow] = field(default_factory=dict)
    tasks: dict[str, Task[Any, Any]] = field(default_factory=dict)
    index: RuleIndex = field(default_factory=lambda: RuleIndex([]))

    @property
    def queues(self) -> list[str]:
        """Every queue a task of this project is dispatched to, `default` first."""
        names = {n.queue for w in self.workflows.values() for n in w.spec.nodes} | {"default"}
        return sorted(names, key=lambda q: (q != "default", q))


def load_project(root: Path | str) -> Project:
    """Load and check the project at `root`; raises ConfigError listing every problem."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError([ConfigIssue(root, None, None, "project directory does not exist "
                                       "(pass --project DIR or set ORCH_PROJECT)")])
    project = Project(root)
    issues: list[ConfigIssue] = []
    _load_python(project, issues)
    configs = _load_rule_files(project, issues)
    _check_rules(project, configs, issues)
    if issues:
        raise ConfigError(issues)
    project.index = RuleIndex(project.rules)
    return project


def _load_python(project: Project, issues: list[ConfigIssue]) -> None:
    folder = project.root / WORKFLOWS_DIR
    if not folder.is_dir():
        return
    _forget_modules(WORKFLOWS_DIR)
    sys.path.insert(0, str(project.root))
    try:
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            try:
                module = importlib.import_module(f"{WORKFLOWS_DIR}.{path.stem}")
            except Exception as exc:  # noqa: BLE001 - any error in user code becomes a located issue
                issues.append(_import_issue(path, exc))
                continue
            _register(project, vars(module).values(), path, issues)
    finally:
        sys.path.remove(str(project.root))


def _forget_modules(package: str) -> None:
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


def _import_issue(path: Path, exc: BaseException) -> ConfigIssue:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    if isinstance(exc, SyntaxError) and exc.lineno:
        line = exc.lineno
    kind = "" if isinstance(exc, OrchestratorError) else f"{type(exc).__name__}: "
    return ConfigIssue(path, line, None, f"{kind}{exc}")


def _register(project: Project, objects: Any, path: Path, issues: list[ConfigIssue]) -> None:
    tasks, workflows = collect(list(objects))
    for wf in workflows:
        other = project.workflows.get(wf.name)
        if other is not None and other is not wf:
            issues.append(ConfigIssue(path, None, None, f"two workflows are named {wf.name!r}"))
        project.workflows[wf.name] = wf
        tasks.extend(wf.tasks.values())
    for task in tasks:
        other_task = project.tasks.get(task.name)
        if other_task is not None and other_task is not task:
            issues.append(ConfigIssue(path, None, None, f"two different tasks are named {task.name!r}: "
                                      "give one an explicit @task(name=...)"))
        project.tasks[task.name] = task


def _load_rule_files(project: Project, issues: list[ConfigIssue]) -> list[tuple[Path, int, Any, dict[Any, int]]]:
    folder = project.root / RULES_DIR
    found: list[tuple[Path, int, Any, dict[Any, int]]] = []
    if not folder.is_dir():
        return found
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    for path in files:
        try:
            data, lines = load_with_lines(path.read_text(encoding="utf-8"))
        except (YamlError, UnicodeDecodeError) as exc:
            issues.append(ConfigIssue(path, getattr(exc, "line", None), None, str(exc)))
            continue
        if data is None:
            continue
        if not isinstance(data, dict):
            issues.append(ConfigIssue(path, 1, None, "expected a mapping with a 'rules:' list"))
            continue
        for key in data:
            if key not in _SECTIONS:
                hint = _did_you_mean(str(key), _SECTIONS)
                issues.append(ConfigIssue(path, line_of(lines, (str(key),)), str(key),
                                          f"unknown section{hint}; expected one of: {', '.join(_SECTIONS)}"))
        rules = data.get("rules") or []
        if not isinstance(rules, list):
            issues.append(ConfigIssue(path, line_of(lines, ("rules",)), "rules", "must be a list of rules"))
            continue
        found.extend((path, i, item, lines) for i, item in enumerate(rules))
    return found


def _check_rules(project: Project, configs: list[tuple[Path, int, Any, dict[Any, int]]],
                 issues: list[ConfigIssue]) -> None:
    seen: dict[str, Path] = {}
    for path, index, item, lines in configs:
        base = ("rules", index)
        try:
            config = RuleConfig.model_validate(item)
            rule = Rule.from_config(config)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(str(p) for p in error["loc"])
                field_name = _field(index, loc)
                message = _pydantic_message(error, loc)
                issues.append(ConfigIssue(path, line_of(lines, (*base, *loc)), field_name, message))
            continue
        except TemplateCompileError as exc:
            parts = tuple(str(p) if isinstance(p, str) else p for p in exc.parts)
            issues.append(ConfigIssue(path, line_of(lines, (*base, *parts)), f"rules[{index}].{exc.path}", str(exc)))
            continue
        if config.name in seen:
            issues.append(ConfigIssue(path, line_of(lines, (*base, "name")), f"rules[{index}].name",
                                      f"rule name {config.name!r} is already used in {seen[config.name]}"))
        seen[config.name] = path
        if _check_workflow(project, config, path, index, lines, issues):
            project.rules.append(rule)


def _check_workflow(project: Project, config: RuleConfig, path: Path, index: int, lines: dict[Any, int],
                    issues: list[ConfigIssue]) -> bool:
    base = ("rules", index)
    workflow = project.workflows.get(config.workflow)
    if workflow is None:
        known = ", ".join(sorted(project.workflows)) or "none found in workflows/*.py"
        hint = _did_you_mean(config.workflow, list(project.workflows))
        issues.append(ConfigIssue(path, line_of(lines, (*base, "workflow")), f"rules[{index}].workflow",
                                  f"unknown workflow {config.workflow!r}{hint} (workflows: {known})"))
        return False
    params = {p.name: p for p in workflow.spec.params}
    ok = True
    for name in config.params:
        if name not in params:
            hint = _did_you_mean(name, list(params))
            issues.append(ConfigIssue(path, line_of(lines, (*base, "params", name)), f"rules[{index}].params.{name}",
                                      f"workflow {workflow.name!r} has no parameter {name!r}{hint} "
                                      f"(parameters: {', '.join(params) or 'none'})"))
            ok = False
    missing = [p for p in params.values() if p.required and p.name not in config.params]
    for param in missing:
        issues.append(ConfigIssue(path, line_of(lines, (*base, "params")) or line_of(lines, base),
                                  f"rules[{index}].params",
                                  f"workflow {workflow.name!r} needs parameter {param.name!r}"))
        ok = False
    return ok


def _field(index: int, loc: tuple[str, ...]) -> str:
    return f"rules[{index}]" + "".join(f".{p}" for p in loc)


def _pydantic_message(error: Any, loc: tuple[str, ...]) -> str:
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "extra_forbidden":
        allowed = [n for n in RuleConfig.model_fields if n not in loc]
        return f"unknown field{_did_you_mean(loc[-1], allowed)} (fields: {', '.join(RuleConfig.model_fields)})"
    return str(error["msg"])


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
