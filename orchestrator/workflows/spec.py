"""④ WorkflowSpec: a workflow's tasks and their dependencies, validated, in JSON-able form.

A spec is what a run is started from and what it keeps: the run stores its spec, so a run that is in
flight when the code changes finishes with the graph it started with.

Task arguments are stored as templates, resolved when the task is dispatched:
    {"$lit": value}                     a JSON literal
    {"$ref": node, "path": [...]}       the result of an upstream node (optionally an item inside it)
    {"$param": name, "path": [...]}     a workflow parameter
    {"$list": [t, ...]}, {"$dict": {k: t}}   containers holding references
"""

from __future__ import annotations

import functools
import graphlib
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import CycleError, TaskError, WorkflowError
from ..jsonutil import dumps

__all__ = [
    "NODE_NAME",
    "QUEUE_NAME",
    "TASK_NAME",
    "MISSING",
    "NodeSpec",
    "ParamSpec",
    "WorkflowSpec",
    "build_spec",
    "resolve",
    "template_refs",
]

NODE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class ParamSpec:
    """A workflow parameter; `default` is MISSING when the parameter is required."""

    name: str
    default: Any = MISSING

    @property
    def required(self) -> bool:
        return self.default is MISSING


@dataclass(frozen=True)
class NodeSpec:
    """One task call inside a workflow."""

    name: str
    task: str
    queue: str = "default"
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    upstream: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "queue": self.queue, "args": list(self.args),
                "kwargs": dict(self.kwargs), "upstream": list(self.upstream)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeSpec:
        return cls(name=data["name"], task=data["task"], queue=data.get("queue", "default"),
                   args=tuple(data.get("args", ())), kwargs=dict(data.get("kwargs", {})),
                   upstream=tuple(data.get("upstream", ())))


@dataclass(frozen=True)
class WorkflowSpec:
    """A validated workflow: nodes in a topological order, each with its upstream nodes."""

    name: str
    params: tuple[ParamSpec, ...]
    nodes: tuple[NodeSpec, ...]

    def node(self, name: str) -> NodeSpec:
        return self._by_name[name]

    @functools.cached_property
    def _by_name(self) -> dict[str, NodeSpec]:
        return {node.name: node for node in self.nodes}

    @property
    def downstream(self) -> dict[str, list[str]]:
        """For each node, the nodes that depend on it directly."""
        out: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for node in self.nodes:
            for up in node.upstream:
                out[up].append(node.name)
        return out

    def levels(self) -> list[list[str]]:
        """Nodes grouped by depth: each group can run once the groups before it are done."""
        depth: dict[str, int] = {}
        for node in self.nodes:
            depth[node.name] = 1 + max((depth[up] for up in node.upstream), default=-1)
        out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for node in self.nodes:
            out[depth[node.name]].append(node.name)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": [{"name": p.name, **({} if p.required else {"default": p.default})} for p in self.params],
            "nodes": [n.to_dict() for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowSpec:
        params = tuple(ParamSpec(p["name"], p.get("default", MISSING)) for p in data.get("params", ()))
        return cls(name=data["name"], params=params, nodes=tuple(NodeSpec.from_dict(n) for n in data["nodes"]))

    @functools.cached_property
    def digest(self) -> str:
        """A short fingerprint of the graph, to tell versions of a workflow apart."""
        return hashlib.blake2b(dumps(self.to_dict()), digest_size=6).hexdigest()

    def bind_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The run's parameters: `given` plus defaults; WorkflowError names unknown or missing ones."""
        known = {p.name for p in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            raise WorkflowError(f"workflow {self.name!r} has no parameter {', '.join(map(repr, unknown))} "
                                f"(parameters: {', '.join(sorted(known)) or 'none'})")
        out = {}
        for param in self.params:
            if param.name in given:
                out[param.name] = given[param.name]
            elif param.required:
                raise WorkflowError(f"workflow {self.name!r} needs parameter {param.name!r}")
            else:
                out[param.name] = param.default
        return out


def template_refs(template: Any) -> set[str]:
    """The upstream nodes a stored argument template refers to."""
    if isinstance(template, dict):
        if "$ref" in template:
            return {template["$ref"]}
        if "$list" in template:
            return set().union(*(template_refs(t) for t in template["$list"])) if template["$list"] else set()
        if "$dict" in template:
            values = template["$dict"].values()
            return set().union(*(template_refs(t) for t in values)) if values else set()
    return set()


def resolve(template: Any, params: Mapping[str, Any], results: Mapping[str, Any]) -> Any:
    """The concrete JSON value of an argument template; TaskError says which reference failed."""
    if "$lit" in template:
        return template["$lit"]
    if "$list" in template:
        return [resolve(t, params, results) for t in template["$list"]]
    if "$dict" in template:
        return {k: resolve(t, params, results) for k, t in template["$dict"].items()}
    if "$ref" in template:
        return _follow(results[template["$ref"]], template.get("path", ()), f"result of {template['$ref']}")
    if "$param" in template:
        return _follow(params[template["$param"]], template.get("path", ()), f"parameter {template['$param']}")
    raise TaskError(f"unknown argument template {template!r}")


def _follow(value: Any, path: Iterable[Any], what: str) -> Any:
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            raise TaskError(f"{what} has no item {step!r}") from None
    return value


def build_spec(name: str, params: Iterable[ParamSpec], nodes: Iterable[NodeSpec]) -> WorkflowSpec:
    """Validate names and dependencies and order the nodes; raises WorkflowError or CycleError."""
    nodes = list(nodes)
    if not nodes:
        raise WorkflowError(f"workflow {name!r} has no tasks")
    by_name: dict[str, NodeSpec] = {}
    for node in nodes:
        _check_node(name, node)
        if node.name in by_name:
            raise WorkflowError(f"workflow {name!r}: two tasks are named {node.name!r}")
        by_name[node.name] = node
    for node in nodes:
        for up in node.upstream:
            if up not in by_name:
                raise WorkflowError(f"workflow {name!r}: task {node.name!r} depends on unknown task {up!r} "
                                    f"(tasks: {', '.join(by_name)})")
    sorter = graphlib.TopologicalSorter({n.name: n.upstream for n in nodes})
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = list(exc.args[1])
        raise CycleError(name, cycle) from None
    return WorkflowSpec(name=name, params=tuple(params), nodes=tuple(by_name[n] for n in order))


def _check_node(workflow: str, node: NodeSpec) -> None:
    if not NODE_NAME.match(node.name):
        raise WorkflowError(f"workflow {workflow!r}: {node.name!r} is not a valid task name in a workflow "
                            "(letters, digits, _ and -, starting with a letter or _)")
    if not QUEUE_NAME.match(node.queue):
        raise WorkflowError(f"workflow {workflow!r}: task {node.name!r}: invalid queue name {node.queue!r}")
