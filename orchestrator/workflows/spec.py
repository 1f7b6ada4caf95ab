"""④ WorkflowSpec: a workflow's tasks and their dependencies, validated, in JSON-able form.

A spec is what a run is started from and what it keeps: the run stores its spec, so a run that is in
flight when the code changes finishes with the graph it started with.

Task arguments are stored as templates, resolved when the task is dispatched:
    {"$lit": value}                     a JSON literal
    {"$ref": node, "path": [...]}       the result of an upstream node (optionally an item inside it)
    {"$param": name, "path": [...]}     a workflow parameter
    {"$list": [t, ...]}, {"$dict": {k: t}}   containers holding references
    {"$item": true, "path": [...]}      the item of a mapped task (fan-out), optionally an item inside it
    {"$tmpl": "...", "refs": [node]}    a Jinja2 template (sandboxed) over `params`, `results`, `event` and
                                        `item`, from YAML workflows; `refs` are the results it reads

Options of a node beyond its call: `kind` (python, shell, http, or wait: a step that waits for an event or
an approval, configured by `wait`, waiting.py), `retry` (a RetryPolicy), `timeout_s`,
`depends` (all_succeeded, all_finished, any_failed), `when` (a sandboxed Jinja2 expression over
`params`, `results` and `event`; false skips the task), and `map_over` (a template giving a list: the task runs
once per item, at most `max_parallel` at a time, and its result is the list of results in order).
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
from .commands import check_shell_options
from .policy import RetryPolicy, check_depends

__all__ = [
    "NODE_NAME",
    "check_node",
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
    kind: str = "python"
    retry: RetryPolicy | None = None
    timeout_s: float | None = None
    depends: str = "all_succeeded"
    when: str | None = None
    map_over: Any = None
    max_parallel: int | None = None
    wait: Mapping[str, Any] | None = None  # of a wait step (kind `wait`): what it waits for (waiting.py)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "task": self.task, "queue": self.queue, "args": list(self.args),
                               "kwargs": dict(self.kwargs), "upstream": list(self.upstream)}
        # options only when set, so the digest of a workflow without them does not change
        if self.kind != "python":
            out["kind"] = self.kind
        if self.retry is not None:
            out["retry"] = self.retry.to_dict()
        if self.depends != "all_succeeded":
            out["depends"] = self.depends
        for name in ("timeout_s", "when", "map_over", "max_parallel", "wait"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeSpec:
        return cls(name=data["name"], task=data["task"], queue=data.get("queue", "default"),
                   args=tuple(data.get("args", ())), kwargs=dict(data.get("kwargs", {})),
                   upstream=tuple(data.get("upstream", ())), kind=data.get("kind", "python"),
                   retry=RetryPolicy.from_value(data.get("retry")), timeout_s=data.get("timeout_s"),
                   depends=data.get("depends", "all_succeeded"), when=data.get("when"),
                   map_over=data.get("map_over"), max_parallel=data.get("max_parallel"), wait=data.get("wait"))

    @property
    def refs(self) -> set[str]:
        """The upstream nodes its arguments and its map refer to."""
        refs = set().union(*(template_refs(t) for t in (*self.args, *self.kwargs.values())))
        return refs | (template_refs(self.map_over) if self.map_over is not None else set())


@dataclass(frozen=True)
class WorkflowSpec:
    """A validated workflow: nodes in a topological order, each with its upstream nodes."""

    name: str
    params: tuple[ParamSpec, ...]
    nodes: tuple[NodeSpec, ...]
    timeout_s: float | None = None  # the run fails (and its unfinished tasks are cancelled) after this
    concurrency: int | None = None  # at most this many runs of the workflow run at once; others wait, queued

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
        out: dict[str, Any] = {
            "name": self.name,
            "params": [{"name": p.name, **({} if p.required else {"default": p.default})} for p in self.params],
            "nodes": [n.to_dict() for n in self.nodes],
        }
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        if self.concurrency is not None:
            out["concurrency"] = self.concurrency
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowSpec:
        params = tuple(ParamSpec(p["name"], p.get("default", MISSING)) for p in data.get("params", ()))
        return cls(name=data["name"], params=params, nodes=tuple(NodeSpec.from_dict(n) for n in data["nodes"]),
                   timeout_s=data.get("timeout_s"), concurrency=data.get("concurrency"))

    @functools.cached_property
    def json(self) -> bytes:
        """`to_dict` as JSON, made once: every run of this version stores it."""
        return dumps(self.to_dict())

    @functools.cached_property
    def digest(self) -> str:
        """A short fingerprint of the graph, to tell versions of a workflow apart."""
        return hashlib.blake2b(self.json, digest_size=6).hexdigest()

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
        if "$tmpl" in template:
            return set(template.get("refs", ()))
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
    if "$item" in template:
        return _follow(results["$item"], template.get("path", ()), "the mapped item")
    if "$param" in template:
        return _follow(params[template["$param"]], template.get("path", ()), f"parameter {template['$param']}")
    if "$tmpl" in template:
        from ..errors import RuleError
        from ..rules.templates import render_value

        context = {"params": params, "results": {k: v for k, v in results.items() if not k.startswith("$")},
                   "item": results.get("$item"), "event": results.get("$event"), "events": results.get("$events")}
        try:
            return render_value(template["$tmpl"], context, "template")
        except RuleError as exc:
            raise TaskError(str(exc)) from None
    raise TaskError(f"unknown argument template {template!r}")


def _follow(value: Any, path: Iterable[Any], what: str) -> Any:
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            raise TaskError(f"{what} has no item {step!r}") from None
    return value


def build_spec(name: str, params: Iterable[ParamSpec], nodes: Iterable[NodeSpec], *,
               timeout_s: float | None = None, concurrency: int | None = None) -> WorkflowSpec:
    """Validate names and dependencies and order the nodes; raises WorkflowError or CycleError."""
    nodes = list(nodes)
    if not nodes:
        raise WorkflowError(f"workflow {name!r} has no tasks")
    by_name: dict[str, NodeSpec] = {}
    for node in nodes:
        check_node(name, node)
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
    if timeout_s is not None and timeout_s <= 0:
        raise WorkflowError(f"workflow {name!r}: timeout_s must be positive")
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)
                                    or concurrency < 1):
        raise WorkflowError(f"workflow {name!r}: concurrency must be a whole number >= 1")
    return WorkflowSpec(name=name, params=tuple(params), nodes=tuple(by_name[n] for n in order), timeout_s=timeout_s,
                        concurrency=concurrency)


def check_node(workflow: str, node: NodeSpec) -> None:
    if not NODE_NAME.match(node.name):
        raise WorkflowError(f"workflow {workflow!r}: {node.name!r} is not a valid task name in a workflow "
                            "(letters, digits, _ and -, starting with a letter or _)")
    where = f"workflow {workflow!r}: task {node.name!r}"
    if not QUEUE_NAME.match(node.queue):
        raise WorkflowError(f"{where}: invalid queue name {node.queue!r}")
    if node.kind not in ("python", "shell", "http", "wait"):
        raise WorkflowError(f"{where}: kind must be python, shell, http or wait, not {node.kind!r}")
    if node.kind == "wait" or node.wait is not None:
        from .waiting import check_wait_node

        check_wait_node(where, node)
    check_depends(node.depends, where)
    if node.timeout_s is not None and node.timeout_s <= 0:
        raise WorkflowError(f"{where}: timeout_s must be positive")
    if node.max_parallel is not None and (node.max_parallel < 1 or node.map_over is None):
        raise WorkflowError(f"{where}: max_parallel needs map_over and must be at least 1")
    if node.when is not None:
        from ..rules.templates import compile_condition

        try:
            compile_condition(node.when)
        except ValueError as exc:
            raise WorkflowError(f"{where}: when: {exc}") from None
    missing = node.refs - set(node.upstream)
    if missing:
        raise WorkflowError(f"{where}: refers to {', '.join(sorted(missing))} without depending on it")
    if node.kind == "shell":
        check_shell_options(where, node.kwargs)
