"""An automation project: a directory with YAML in `rules/**/*.yaml` and workflows in `workflows/*.py`
(and `workflows/*.yaml`, see workflows/yamlflows.py).

A YAML file holds any of four sections: `rules:` (event -> workflow), `schedules:` (cron),
`hooks:` (webhook endpoints) and `watches:` (file watches). `load_project(path)` imports the workflow
modules (collecting their `@task`s, `@workflow`s and `schedule(...)`s), loads and checks every section,
and reports every problem at once as a ConfigError whose issues name the file, the line and the field.
`load_hooks(path)` reads only the `hooks:` sections (what `orch api` serves), importing no Python.
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
from .hooks import HookConfig
from .rules.match import RuleIndex
from .rules.model import Rule, RuleConfig
from .rules.templates import TemplateCompileError
from .schedules import ScheduleConfig
from .watches import WatchConfig
from .workflows.dsl import Task, Workflow, collect
from .workflows.yamlflows import YamlWorkflow, load_yaml_workflows
from .yamlpos import YamlError, line_of, load_with_lines

__all__ = ["Location", "Project", "load_hooks", "load_project"]

RULES_DIR = "rules"
WORKFLOWS_DIR = "workflows"
_SECTIONS = ("rules", "schedules", "hooks", "watches")
_MODELS: dict[str, type[Any]] = {"schedules": ScheduleConfig, "hooks": HookConfig, "watches": WatchConfig}

_Item = tuple[Path, int, Any, dict[Any, int]]
Location = tuple[Path, int | None]  # (YAML file, line) of a declaration


@dataclass
class Project:
    """Everything loaded from a project directory."""

    root: Path
    rules: list[Rule] = field(default_factory=list)
    workflows: dict[str, Workflow | YamlWorkflow] = field(default_factory=dict)
    tasks: dict[str, Task[Any, Any]] = field(default_factory=dict)
    index: RuleIndex = field(default_factory=lambda: RuleIndex([]))
    schedules: dict[str, ScheduleConfig] = field(default_factory=dict)
    hooks: dict[str, HookConfig] = field(default_factory=dict)
    watches: dict[str, WatchConfig] = field(default_factory=dict)
    hook_locations: dict[str, Location] = field(default_factory=dict)
    python_schedules: list[tuple[Path, ScheduleConfig]] = field(default_factory=list, repr=False)

    @property
    def queues(self) -> list[str]:
        """Every queue a task of this project is dispatched to, `default` first."""
        names = {n.queue for w in self.workflows.values() for n in w.spec.nodes} | {"default"}
        return sorted(names, key=lambda q: (q != "default", q))


def load_project(root: Path | str, *, watch_roots: tuple[Path, ...] = (), check_watch_paths: bool = False) -> Project:
    """Load and check the project at `root`; raises ConfigError listing every problem.

    With `check_watch_paths` (`orch triggers`, `orch validate`), every watched directory must exist on
    this host, inside the project directory or one of `watch_roots`; other roles only need well-formed
    paths (they never open the directories).
    """
    project = Project(_project_root(root))
    issues: list[ConfigIssue] = []
    _load_python(project, issues)
    _load_yaml_workflows(project, issues)
    sections = _load_yaml_files(project, issues)
    _check_rules(project, sections["rules"], issues)
    context = {"project_root": project.root, "watch_roots": (project.root, *[Path(r) for r in watch_roots]),
               "check_watch_paths": check_watch_paths}
    for name, model in _MODELS.items():
        where = project.hook_locations if name == "hooks" else None
        found = _check_section(name, model, sections[name], context, issues, where)
        getattr(project, name).update(found)
    _check_python_schedules(project, issues)
    if issues:
        raise ConfigError(issues)
    project.index = RuleIndex(project.rules)
    return project


def load_hooks(root: Path | str) -> tuple[dict[str, HookConfig], dict[str, Location]]:
    """Only the webhook endpoints of the project at `root`, and where each is declared; no Python is imported.

    Raises ConfigError for problems in `hooks:` sections and for YAML files that cannot be read (they may
    declare endpoints); problems in other sections are for the roles that use them (`orch validate`).
    """
    project = Project(_project_root(root))
    issues: list[ConfigIssue] = []
    sections = _load_yaml_files(project, issues)
    issues = [i for i in issues if i.field is None or i.field == "hooks"]
    found = _check_section("hooks", HookConfig, sections["hooks"], {"project_root": project.root}, issues,
                           project.hook_locations)
    if issues:
        raise ConfigError(issues)
    return found, project.hook_locations


def _project_root(root: Path | str) -> Path:
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError([ConfigIssue(path, None, None, "project directory does not exist "
                                       "(pass --project DIR or set ORCH_PROJECT)")])
    return path


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


def _load_yaml_workflows(project: Project, issues: list[ConfigIssue]) -> None:
    """Workflows declared in workflows/*.yaml, over the tasks the Python modules registered."""
    found, problems = load_yaml_workflows(project.root / WORKFLOWS_DIR, project.tasks, project.workflows)
    issues.extend(problems)
    project.workflows.update((wf.name, wf) for wf in found)


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
    objects = list(objects)
    tasks, workflows = collect(objects)
    project.python_schedules.extend((path, o) for o in objects if isinstance(o, ScheduleConfig))
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


def _load_yaml_files(project: Project, issues: list[ConfigIssue]) -> dict[str, list[_Item]]:
    folder = project.root / RULES_DIR
    found: dict[str, list[_Item]] = {name: [] for name in _SECTIONS}
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
            issues.append(ConfigIssue(path, 1, None, "expected a mapping with sections such as 'rules:'"))
            continue
        for key in data:
            if key not in _SECTIONS:
                hint = _did_you_mean(str(key), _SECTIONS)
                issues.append(ConfigIssue(path, line_of(lines, (str(key),)), str(key),
                                          f"unknown section{hint}; expected one of: {', '.join(_SECTIONS)}"))
        for section in _SECTIONS:
            items = data.get(section) or []
            if not isinstance(items, list):
                issues.append(ConfigIssue(path, line_of(lines, (section,)), section,
                                          f"must be a list of {section}"))
                continue
            found[section].extend((path, i, item, lines) for i, item in enumerate(items))
    return found


def _check_section(section: str, model: type[Any], items: list[_Item], context: dict[str, Any],
                   issues: list[ConfigIssue], where: dict[str, Location] | None = None) -> dict[str, Any]:
    """Validate the items of a `schedules:`, `hooks:` or `watches:` section; names must be unique.

    `where`, when given, receives the file and line of each item kept.
    """
    found: dict[str, Any] = {}
    seen: dict[str, Path] = {}
    for path, index, item, lines in items:
        base = (section, index)
        try:
            config = model.model_validate(item, context=context)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(str(p) for p in error["loc"])
                issues.append(ConfigIssue(path, line_of(lines, (*base, *loc)), _field(index, loc, section),
                                          _pydantic_message(error, loc, model)))
            continue
        if config.name in seen:
            issues.append(ConfigIssue(path, line_of(lines, (*base, "name")), f"{section}[{index}].name",
                                      f"{section[:-1]} name {config.name!r} is already used in {seen[config.name]}"))
            continue
        seen[config.name] = path
        found[config.name] = config
        if where is not None:
            where[config.name] = (path, line_of(lines, base))
    return found


def _check_python_schedules(project: Project, issues: list[ConfigIssue]) -> None:
    for path, config in project.python_schedules:
        if config.name in project.schedules:
            issues.append(ConfigIssue(path, None, "schedule", f"schedule name {config.name!r} is declared twice "
                                      "(in Python and in YAML, or in two modules)"))
            continue
        project.schedules[config.name] = config


def _check_rules(project: Project, configs: list[_Item], issues: list[ConfigIssue]) -> None:
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
                message = _pydantic_message(error, loc, RuleConfig)
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
        known = ", ".join(sorted(project.workflows)) or "none found in workflows/"
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


def _field(index: int, loc: tuple[str, ...], section: str = "rules") -> str:
    return f"{section}[{index}]" + "".join(f".{p}" for p in loc)


def _pydantic_message(error: Any, loc: tuple[str, ...], model: type[Any]) -> str:
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "extra_forbidden":
        fields = list(model.model_fields)
        allowed = [n for n in fields if n not in loc]
        return f"unknown field{_did_you_mean(loc[-1], allowed)} (fields: {', '.join(fields)})"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
