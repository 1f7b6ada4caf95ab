"""The `rules:` of a project, checked: each rule validated and compiled (its pattern, templates, `if:`,
controls) and checked against the project's workflows (the workflow exists, the parameters fit, the
controls do not clash with the workflow's own limit). Every problem becomes a ConfigIssue naming the file,
the line and the field (`rules[3].match.data.amount.numeric`), as project.py reports them all at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .errors import ConfigIssue, did_you_mean, pydantic_message
from .rules.controls import workflow_conflicts
from .rules.model import Rule, RuleConfig
from .rules.pattern import PatternError
from .rules.templates import TemplateCompileError
from .rules.version import canonical_config
from .yamlpos import line_of

if TYPE_CHECKING:
    from .project import Project

__all__ = ["Item", "check_rules", "field_name"]

Item = tuple[Path, int, Any, dict[Any, int]]  # (YAML file, index in its list, the item, its lines)


def check_rules(project: Project, configs: Sequence[Item], issues: list[ConfigIssue]) -> None:
    """Validate and compile each rule of `configs` (file, index, YAML item, its lines), adding the good ones
    to `project` (rules, rule_configs, locations) and every problem to `issues` with file, line and field."""
    seen: dict[str, Path] = {}
    for path, index, item, lines in configs:
        base = ("rules", index)
        try:
            config = RuleConfig.model_validate(item)
            rule = Rule.from_config(config)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(str(p) for p in error["loc"])
                name = field_name(index, loc)
                message = pydantic_message(error, loc, RuleConfig)
                issues.append(ConfigIssue(path, line_of(lines, (*base, *loc)), name, message))
            continue
        except TemplateCompileError as exc:
            parts = tuple(str(p) if isinstance(p, str) else p for p in exc.parts)
            issues.append(ConfigIssue(path, line_of(lines, (*base, *parts)), f"rules[{index}].{exc.path}", str(exc)))
            continue
        except PatternError as exc:
            where = f"rules[{index}].match" + (f".{exc.path}" if exc.path else "")
            issues.append(ConfigIssue(path, line_of(lines, (*base, "match", *exc.parts)), where, exc.detail))
            continue
        huge = _huge_integer(item, ())
        if huge is not None:
            issues.append(ConfigIssue(path, line_of(lines, (*base, *huge)), field_name(index, tuple(map(str, huge))),
                                      "a number outside the 64-bit integer range (-2**63 .. 2**63-1): no JSON tool "
                                      "holds it exactly; quote it, or use a smaller number"))
            continue
        if config.name in seen:
            issues.append(ConfigIssue(path, line_of(lines, (*base, "name")), f"rules[{index}].name",
                                      f"rule name {config.name!r} is already used in {seen[config.name]}"))
        seen[config.name] = path
        project.locations[("rules", config.name)] = (path, line_of(lines, base))
        if _check_workflow(project, config, path, index, lines, issues):
            project.rules.append(rule)
            project.rule_configs.append(canonical_config(config))


def _check_workflow(project: Project, config: RuleConfig, path: Path, index: int, lines: dict[Any, int],
                    issues: list[ConfigIssue]) -> bool:
    base = ("rules", index)
    workflow = project.workflows.get(config.workflow)
    if workflow is None:
        known = ", ".join(sorted(project.workflows)) or "none found in workflows/"
        hint = did_you_mean(config.workflow, list(project.workflows))
        issues.append(ConfigIssue(path, line_of(lines, (*base, "workflow")), f"rules[{index}].workflow",
                                  f"unknown workflow {config.workflow!r}{hint} (workflows: {known})"))
        return False
    params = {p.name: p for p in workflow.spec.params}
    ok = True
    for name, message in workflow_conflicts(config.concurrency, config.singleton, config.priority, workflow.name,
                                            workflow.spec.concurrency):
        issues.append(ConfigIssue(path, line_of(lines, (*base, name)), f"rules[{index}].{name}", message))
        ok = False
    for name in config.params:
        if name not in params:
            hint = did_you_mean(name, list(params))
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


def _huge_integer(value: Any, at: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Where in a rule's YAML item an integer lies outside 64 bits (which JSON encoding refuses), if anywhere."""
    if isinstance(value, int) and not isinstance(value, bool):
        return at if not -2**63 <= value < 2**63 else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return next((found for key, item in items if (found := _huge_integer(item, (*at, key))) is not None), None)


def field_name(index: int, loc: tuple[str, ...], section: str = "rules") -> str:
    """`rules[3].match.data` for item 3 of `section` and the field path `loc` inside it."""
    return f"{section}[{index}]" + "".join(f".{p}" for p in loc)
