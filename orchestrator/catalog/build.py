"""The project catalogue built from a loaded project: pure, the clock passed in.

Rules and workflows are the core's own; the triggers' items (schedules, webhooks, watches) describe
themselves through `Describable.catalog_entry()`, since the core never imports triggers/. The builder
adds to each trigger item the rules its events can match (by event type and source, without the
rules' field conditions), and to each rule the schedules that feed it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, Protocol, TypeVar, runtime_checkable

import orjson
from pydantic import BaseModel

from ..project import Project
from ..rules.model import Rule
from ..workflows.dsl import Workflow
from ..workflows.spec import NodeSpec, WorkflowSpec
from ..workflows.yamlflows import YamlWorkflow
from .model import (
    Catalog,
    HookEntry,
    NodeEntry,
    ParamEntry,
    ProjectRef,
    RuleEntry,
    ScheduleEntry,
    ScheduleRef,
    WatchEntry,
    WorkflowEntry,
)

__all__ = ["Describable", "build_catalog", "dag_nodes", "fed_rules"]

_E = TypeVar("_E", ScheduleEntry, HookEntry, WatchEntry)


@runtime_checkable
class Describable(Protocol):
    """A trigger item that can show itself in the catalogue (without secrets)."""

    def catalog_entry(self) -> BaseModel: ...


def build_catalog(project: Project, now: datetime) -> dict[str, Any]:
    """The catalogue of `project` as JSON-ready data (the shape is model.Catalog), written at `now`."""
    schedules = _entries(project.schedules.values(), ScheduleEntry)
    schedules = [s.model_copy(update={"rules": fed_rules(project.rules, [s.type], s.source)}) for s in schedules]
    hooks = [h.model_copy(update={"rules": fed_rules(project.rules, None, h.source)})
             for h in _entries(project.hooks.values(), HookEntry)]
    watches = [w.model_copy(update={"rules": fed_rules(project.rules, w.events, w.source)})
               for w in _entries(project.watches.values(), WatchEntry)]
    catalog = Catalog(
        written_at=now, project=ProjectRef(name=project.root.name, path=str(project.root)), ruleset=project.ruleset or None,
        rules=[_rule(rule, project, schedules) for rule in project.rules],
        workflows=[_workflow(wf) for _, wf in sorted(project.workflows.items())],
        schedules=schedules, hooks=hooks, watches=watches)
    return catalog.model_dump(mode="json")


def fed_rules(rules: Iterable[Rule], types: list[str] | None, source: str) -> list[str]:
    """The rules an event of one of `types` from `source` can match (their field conditions aside).

    With `types` None (not known in advance, as a webhook's), only rules that name a source glob count."""
    out = []
    for rule in rules:
        if rule.source is not None and not fnmatchcase(source, rule.source):
            continue
        if types is None and rule.source is None:
            continue
        if types is not None and not any(fnmatchcase(t, pattern) for t in types for pattern in rule.types):
            continue
        out.append(rule.name)
    return out


def dag_nodes(spec: WorkflowSpec) -> list[dict[str, Any]]:
    """The graph of a workflow spec (a project's, or a run's) as JSON-ready nodes (model.NodeEntry)."""
    return [_node(node).model_dump(mode="json") for node in spec.nodes]


def _entries(items: Iterable[Any], kind: type[_E]) -> list[_E]:
    found = (item.catalog_entry() for item in items if isinstance(item, Describable))
    return sorted((entry for entry in found if isinstance(entry, kind)), key=lambda e: e.name)


def _node(node: NodeSpec) -> NodeEntry:
    return NodeEntry(name=node.name, task=node.task, kind=node.kind, queue=node.queue, upstream=list(node.upstream),
                     depends=node.depends, retries=node.retry.max_retries if node.retry else 0,
                     timeout_s=node.timeout_s, mapped=node.map_over is not None, max_parallel=node.max_parallel,
                     when=node.when)


def _workflow(workflow: Workflow | YamlWorkflow) -> WorkflowEntry:
    spec = workflow.spec
    return WorkflowEntry(name=spec.name, version=spec.digest,
                         kind="yaml" if isinstance(workflow, YamlWorkflow) else "python",
                         params=[ParamEntry(name=p.name, required=p.required) for p in spec.params],
                         timeout_s=spec.timeout_s, concurrency=spec.concurrency,
                         nodes=[_node(node) for node in spec.nodes])


def _rule(rule: Rule, project: Project, schedules: list[ScheduleEntry]) -> RuleEntry:
    workflow = project.workflows.get(rule.workflow)
    return RuleEntry(
        name=rule.name, types=list(rule.types), source=rule.source, workflow=rule.workflow,
        filter=" and ".join([*([rule.pattern.describe()] if rule.pattern.describe() else []),
                             *([f"if {rule.if_expr.text}"] if rule.if_expr else [])]) or None,
        params={name: _text(value) for name, value in rule.params.source.items()}, enabled=rule.enabled,
        schedules=[ScheduleRef(name=s.name, overlap=s.overlap) for s in schedules if rule.name in s.rules],
        concurrency=workflow.spec.concurrency if workflow is not None else None,
        hold=f"{rule.hold.kind}: {', '.join(f'{k}={v}' for k, v in rule.hold.config.items())}" if rule.hold else None)


def _text(value: Any) -> str:
    """A parameter's template as written: a string as is, anything else (a list, a mapping, a number) as JSON."""
    return value if isinstance(value, str) else _json(value)


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):  # e.g. an integer beyond 64 bits, or keys of mixed types
        return repr(value)
