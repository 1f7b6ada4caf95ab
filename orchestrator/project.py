"""An automation project: a directory with YAML in `rules/**/*.yaml` and workflows in `workflows/*.py`
(and `workflows/*.yaml`, see workflows/yamlflows.py).

A YAML file holds `rules:` (event -> workflow) and the sections of the triggers, each a `Section` the
caller passes in: `schedules:` (cron), `hooks:` (webhook endpoints), `watches:` (file watches), whose
models live beside their runtimes in `triggers/` (the core never imports them; the process entry
points wire them in, see orchestrator/cli/wiring.py). `load_project(path, sections=...)` imports the
workflow modules (collecting their `@task`s, `@workflow`s and items of a section's `python_type`, such
as `schedule(...)`), loads and checks every section, and reports every problem at once as a ConfigError
whose issues name the file, the line and the field. `load_sections(path, sections)` reads only the given
sections (what `orch api` serves: `hooks:`), importing no Python.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import (
    ConfigError,
    ConfigIssue,
    OrchestratorError,
    did_you_mean,
    files_inside,
    hidden,
    pydantic_message,
)
from .project_rules import Item, check_rules
from .project_rules import field_name as _field
from .rules.match import RuleIndex
from .rules.model import Rule
from .rules.version import ruleset_version
from .workflows.dsl import Task, Workflow, collect
from .workflows.yamlflows import YamlWorkflow, load_yaml_workflows
from .yamlpos import YamlError, line_of, load_with_lines

__all__ = ["Location", "Project", "Section", "load_project", "load_rules", "load_sections", "with_rules"]

RULES_DIR = "rules"
WORKFLOWS_DIR = "workflows"

Location = tuple[Path, int | None]  # (YAML file, line) of a declaration
CrossCheck = Callable[[Mapping[str, Any]], list[tuple[str, str, str]]]


@dataclass(frozen=True)
class Section:
    """A YAML section besides `rules:`, declared by a trigger: items validated by `model` (a pydantic model
    with a unique `name`). Objects of `python_type` assigned to module-level names in workflow modules are
    items too; `check` finds problems between items: (item name, field, message)."""

    name: str
    model: type[Any]
    python_type: type[Any] | None = None
    check: CrossCheck | None = None


@dataclass
class Project:
    """Everything loaded from a project directory."""

    root: Path
    rules: list[Rule] = field(default_factory=list)
    workflows: dict[str, Workflow | YamlWorkflow] = field(default_factory=dict)
    tasks: dict[str, Task[Any, Any]] = field(default_factory=dict)
    index: RuleIndex = field(default_factory=lambda: RuleIndex([]))
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)  # section -> item name -> config
    locations: dict[tuple[str, str], Location] = field(default_factory=dict)  # (section, item) -> where
    python_items: list[tuple[Path, Any]] = field(default_factory=list, repr=False)
    rule_configs: list[dict[str, Any]] = field(default_factory=list, repr=False)  # each rule's, as JSON data
    ruleset: str = ""  # the rule-set version (rules/version.py) every run it starts records

    @property
    def schedules(self) -> dict[str, Any]:
        """Cron schedules by name (triggers/cron; the engine applies their overlap policy)."""
        return self.sections.get("schedules", {})

    @property
    def hooks(self) -> dict[str, Any]:
        """Webhook endpoints by name (triggers/webhooks)."""
        return self.sections.get("hooks", {})

    @property
    def watches(self) -> dict[str, Any]:
        """File watches by name (triggers/files)."""
        return self.sections.get("watches", {})

    @property
    def queues(self) -> list[str]:
        """Every queue a task of this project is dispatched to, `default` first."""
        names = {n.queue for w in self.workflows.values() for n in w.spec.nodes} | {"default"}
        return sorted(names, key=lambda q: (q != "default", q))


def load_project(root: Path | str, *, sections: Sequence[Section] = (),
                 context: Mapping[str, Any] | None = None) -> Project:
    """Load and check the project at `root`, with the trigger `sections` it may declare; raises ConfigError
    listing every problem. `context` reaches the sections' validators (with `project_root` added)."""
    project = Project(_project_root(root))
    issues: list[ConfigIssue] = []
    _load_python(project, sections, issues)
    _load_yaml_workflows(project, issues)
    found = _load_yaml_files(project, issues, sections)
    check_rules(project, found["rules"], issues)
    full_context = {**(context or {}), "project_root": project.root}
    for section in sections:
        project.sections[section.name] = _check_section(section, found[section.name], full_context, issues,
                                                        project.locations)
        _add_python_items(project, section, issues)
        _cross_check(project, section, issues)
    if issues:
        raise ConfigError(issues)
    _finish(project)
    return project


def with_rules(project: Project, configs: Sequence[Any], origin: str) -> Project:
    """A copy of `project` whose rules are `configs` (rule configs as JSON data, such as another engine
    published; `origin` names them in errors); its workflows and sections stay. ConfigError when a rule is
    invalid or names a workflow or parameter this project does not have."""
    issues: list[ConfigIssue] = []
    other = replace(project, rules=[], rule_configs=[], sections={k: dict(v) for k, v in project.sections.items()},
                    locations={k: v for k, v in project.locations.items() if k[0] != "rules"})  # not shared
    check_rules(other, [(Path(origin), index, item, {}) for index, item in enumerate(configs)], issues)
    if issues:
        raise ConfigError(issues)
    _finish(other)
    return other


def _finish(project: Project) -> None:
    """Index the rules and stamp the rule-set version."""
    project.index = RuleIndex(project.rules)
    project.ruleset = ruleset_version(project.rule_configs, {n: w.spec.digest for n, w in project.workflows.items()})


def load_sections(root: Path | str, sections: Sequence[Section],
                  context: Mapping[str, Any] | None = None) -> Project:
    """Only the given sections of the project at `root` (and where each item is declared); no Python is
    imported. Raises ConfigError for problems in those sections and for YAML files that cannot be read
    (they may declare items); problems in other sections are for the roles that use them (`orch validate`).
    """
    project = Project(_project_root(root))
    issues: list[ConfigIssue] = []
    found = _load_yaml_files(project, issues, sections)
    wanted = {s.name for s in sections}
    issues = [i for i in issues if i.field is None or i.field in wanted]
    full_context = {**(context or {}), "project_root": project.root}
    for section in sections:
        project.sections[section.name] = _check_section(section, found[section.name], full_context, issues,
                                                        project.locations)
        _cross_check(project, section, issues)
    if issues:
        raise ConfigError(issues)
    return project


def load_rules(project: Project, folder: Path | str) -> list[Rule]:
    """The rules in `folder`'s YAML files (`rules:` only; other sections are left to their roles), checked
    against `project`'s workflows: a proposed rule set (`orch rules test --rules DIR`). ConfigError lists
    every problem."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError([ConfigIssue(root, None, None, "rules directory does not exist")])
    proposed = Project(project.root, workflows=project.workflows, tasks=project.tasks)
    issues: list[ConfigIssue] = []
    found = _load_yaml_files(proposed, issues, (), folder=root)
    issues = [i for i in issues if i.field is None or i.field == "rules"]
    check_rules(proposed, found["rules"], issues)
    if issues:
        raise ConfigError(issues)
    return proposed.rules


def _project_root(root: Path | str) -> Path:
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError([ConfigIssue(path, None, None, "project directory does not exist "
                                       "(pass --project DIR or set ORCH_PROJECT)")])
    return path


def _load_python(project: Project, sections: Sequence[Section], issues: list[ConfigIssue]) -> None:
    folder = project.root / WORKFLOWS_DIR
    if not folder.is_dir():
        return
    _forget_modules(WORKFLOWS_DIR)
    sys.path.insert(0, str(project.root))
    try:
        modules, outside = files_inside(project.root, sorted(folder.glob("*.py")))
        issues.extend(outside)
        for path in modules:
            if path.name.startswith("_"):
                continue
            try:
                module = importlib.import_module(f"{WORKFLOWS_DIR}.{path.stem}")
            except BaseException as exc:  # noqa: BLE001 - user code's error (even SystemExit) is a located issue
                issues.append(_import_issue(path, exc))
                continue
            _register(project, vars(module).values(), path, issues, sections)
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


def _register(project: Project, objects: Any, path: Path, issues: list[ConfigIssue],
              sections: Sequence[Section]) -> None:
    objects = list(objects)
    tasks, workflows = collect(objects)
    types = tuple(s.python_type for s in sections if s.python_type is not None)
    project.python_items.extend((path, o) for o in objects if types and isinstance(o, types))
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


def _load_yaml_files(project: Project, issues: list[ConfigIssue], sections: Sequence[Section],
                     folder: Path | None = None) -> dict[str, list[Item]]:
    names = ("rules", *(s.name for s in sections))
    folder = folder or project.root / RULES_DIR
    found: dict[str, list[Item]] = {name: [] for name in names}
    if not folder.is_dir():
        return found
    base = project.root if folder.is_relative_to(project.root) else folder  # symlinks may not lead out of it
    files, outside = files_inside(base, sorted(
        p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file() and not hidden(p, folder)))
    issues.extend(outside)
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
            if key not in names:
                hint = did_you_mean(str(key), names)
                issues.append(ConfigIssue(path, line_of(lines, (str(key),)), str(key),
                                          f"unknown section{hint}; expected one of: {', '.join(names)}"))
        for section in names:
            items = data.get(section) or []
            if not isinstance(items, list):
                issues.append(ConfigIssue(path, line_of(lines, (section,)), section,
                                          f"must be a list of {section}"))
                continue
            found[section].extend((path, i, item, lines) for i, item in enumerate(items))
    return found


def _check_section(spec: Section, items: list[Item], context: dict[str, Any], issues: list[ConfigIssue],
                   where: dict[tuple[str, str], Location]) -> dict[str, Any]:
    """Validate the items of a section; names must be unique. `where` receives each item's file and line."""
    section, model = spec.name, spec.model
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
                                          pydantic_message(error, loc, model)))
            continue
        if config.name in seen:
            issues.append(ConfigIssue(path, line_of(lines, (*base, "name")), f"{section}[{index}].name",
                                      f"{section[:-1]} name {config.name!r} is already used in {seen[config.name]}"))
            continue
        seen[config.name] = path
        found[config.name] = config
        where[(section, config.name)] = (path, line_of(lines, base))
    return found


def _add_python_items(project: Project, section: Section, issues: list[ConfigIssue]) -> None:
    """Items of `section` declared in Python (e.g. `schedule(...)` in a workflow module)."""
    found = project.sections[section.name]
    for path, item in project.python_items:
        if section.python_type is None or not isinstance(item, section.python_type):
            continue
        if item.name in found:
            issues.append(ConfigIssue(path, None, section.name, f"{section.name[:-1]} name {item.name!r} is declared "
                                      "twice (in Python and in YAML, or in two modules)"))
            continue
        found[item.name] = item
        project.locations[(section.name, item.name)] = (path, None)


def _cross_check(project: Project, section: Section, issues: list[ConfigIssue]) -> None:
    """Problems between the items of a section (e.g. two webhooks claiming one event source)."""
    if section.check is None:
        return
    for name, field_name, message in section.check(project.sections[section.name]):
        path, line = project.locations.get((section.name, name), (None, None))
        issues.append(ConfigIssue(path, line, f"{section.name}.{name}.{field_name}", message))
