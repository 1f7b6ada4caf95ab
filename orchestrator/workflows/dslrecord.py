"""④ Recording a `@workflow` function (dsl.py): the references its task calls return and the builder
that turns each call into a NodeSpec.

While the function runs once to be recorded, `building` holds its `Builder`; a task call adds a node
and returns a `TaskRef`, the parameters are `ParamRef`s, and the arguments are encoded as templates
(`$ref`, `$param`, `$item`, `$lit`, `$list`, `$dict`) whose references are the node's upstream.
Kept apart from dsl.py, the decorators workflow authors use, because this changes with the node
encoding and its checks, not with the authoring API.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import WorkflowError
from ..jsonutil import JSONValueError, check_json
from .policy import RetryPolicy
from .spec import NodeSpec, template_refs

if TYPE_CHECKING:
    from .dsl import Task

__all__ = ["Builder", "ParamRef", "Ref", "TaskRef", "building"]

building: contextvars.ContextVar[Builder | None] = contextvars.ContextVar("orch_building", default=None)


class Ref:
    """A value that exists only when the workflow runs: a task result or a parameter."""

    def __init__(self, builder: Builder, path: tuple[str | int, ...]) -> None:
        self._builder = builder
        self._path = path

    def __bool__(self) -> bool:
        raise WorkflowError(f"{self!r} has no value while the workflow is being defined: pass it to a task "
                            "instead of testing it")

    def __iter__(self) -> Any:
        raise WorkflowError(f"{self!r} has no value while the workflow is being defined: pass it to a task "
                            "instead of iterating over it")

    def __str__(self) -> str:
        raise WorkflowError(f"{self!r} has no value while the workflow is being defined: pass it to a task and "
                            "build the string there")

    def __format__(self, spec: str) -> str:
        return self.__str__()

    def _template(self) -> dict[str, Any]:
        raise NotImplementedError


class TaskRef(Ref):
    """The future result of one task call inside a workflow (or an item of it)."""

    def __init__(self, builder: Builder, node: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(builder, path)
        self.node = node

    def __getitem__(self, key: str | int) -> TaskRef:
        return TaskRef(self._builder, self.node, (*self._path, key))

    def _template(self) -> dict[str, Any]:
        return {"$ref": self.node, "path": list(self._path)}

    def __repr__(self) -> str:
        return f"<result of {self.node}{''.join(f'[{p!r}]' for p in self._path)}>"


class ParamRef(Ref):
    """A workflow parameter (or an item of it), as seen while the workflow is being defined."""

    def __init__(self, builder: Builder, name: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(builder, path)
        self.name = name

    def __getitem__(self, key: str | int) -> ParamRef:
        return ParamRef(self._builder, self.name, (*self._path, key))

    def _template(self) -> dict[str, Any]:
        return {"$param": self.name, "path": list(self._path)}

    def __repr__(self) -> str:
        return f"<parameter {self.name}{''.join(f'[{p!r}]' for p in self._path)}>"


@dataclass
class Builder:
    """The graph of the workflow being recorded: its nodes, and the tasks they call."""

    workflow: str
    nodes: list[NodeSpec] = field(default_factory=list)
    tasks: dict[str, Task[Any, Any]] = field(default_factory=dict)

    def add(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, name: str | None,
            after: Sequence[TaskRef | str], queue: str | None, options: dict[str, Any] | None = None,
            map_over: Any = None) -> TaskRef:
        node = name or self._free_name(task.name)
        where = f"workflow {self.workflow!r}: task {node!r}"
        if map_over is not None:
            args = (_ITEM, *args)
        try:
            bound = inspect.signature(task.fn).bind(*args, **kwargs)
        except TypeError as exc:
            raise WorkflowError(f"{where}: {exc}") from None
        enc_args = tuple(self._encode(a, f"{where}: argument {i}") for i, a in enumerate(bound.args))
        enc_kwargs = {k: self._encode(v, f"{where}: argument {k!r}") for k, v in bound.kwargs.items()}
        enc_map = self._encode(map_over, f"{where}: map") if map_over is not None else None
        upstream = set().union(*(template_refs(t) for t in (*enc_args, *enc_kwargs.values())))
        upstream |= template_refs(enc_map) if enc_map is not None else set()
        for dep in after:
            if isinstance(dep, TaskRef):
                self._own(dep, where)
                upstream.add(dep.node)
            elif isinstance(dep, str):
                upstream.add(dep)
            else:
                raise WorkflowError(f"{where}: after= takes task results or task names, got {type(dep).__name__}")
        settings = {**task.options, **{k: v for k, v in (options or {}).items() if v is not None}}
        try:
            retry = RetryPolicy.from_value(settings.pop("retries", None))
            spec = NodeSpec(name=node, task=task.name, queue=queue or task.queue, args=enc_args, kwargs=enc_kwargs,
                            upstream=tuple(sorted(upstream)), retry=retry, map_over=enc_map, **settings)
        except (TypeError, WorkflowError) as exc:
            raise WorkflowError(f"{where}: {exc}") from None
        self.nodes.append(spec)
        self.tasks[task.name] = task
        return TaskRef(self, node)

    def add_builtin(self, kind: str, name: str, config: dict[str, Any], *, after: Sequence[TaskRef | str],
                    queue: str | None, options: dict[str, Any]) -> TaskRef:
        """A shell or http node: `config` (which may hold task results) becomes its keyword arguments."""
        where = f"workflow {self.workflow!r}: task {name!r}"
        if name in {n.name for n in self.nodes}:
            raise WorkflowError(f"{where}: the name is already used in this workflow")
        kwargs = {k: self._encode(v, f"{where}: {k}") for k, v in config.items() if v is not None}
        upstream = set().union(*(template_refs(t) for t in kwargs.values())) if kwargs else set()
        for dep in after:
            upstream.add(dep.node if isinstance(dep, TaskRef) else dep)
        settings = {k: v for k, v in options.items() if v is not None}
        try:
            retry = RetryPolicy.from_value(settings.pop("retries", None))
            spec = NodeSpec(name=name, task=kind, queue=queue or "default", kwargs=kwargs,
                            upstream=tuple(sorted(upstream)), kind=kind, retry=retry, **settings)
        except (TypeError, WorkflowError) as exc:
            raise WorkflowError(f"{where}: {exc}") from None
        self.nodes.append(spec)
        return TaskRef(self, name)

    def _free_name(self, base: str) -> str:
        taken = {n.name for n in self.nodes}
        if base not in taken:
            return base
        suffix = 2
        while f"{base}_{suffix}" in taken:
            suffix += 1
        return f"{base}_{suffix}"

    def _own(self, ref: Ref, where: str) -> None:
        if ref._builder is not self:
            raise WorkflowError(f"{where}: {ref!r} belongs to another workflow")

    def _encode(self, value: Any, where: str) -> Any:
        if value is _ITEM:
            return {"$item": True, "path": []}
        if isinstance(value, Ref):
            self._own(value, where)
            return value._template()
        if not _has_ref(value):
            try:
                check_json(value)
            except JSONValueError as exc:
                raise WorkflowError(f"{where}: {exc}") from None
            return {"$lit": value}
        if isinstance(value, list | tuple):
            return {"$list": [self._encode(v, where) for v in value]}
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {"$dict": {k: self._encode(v, where) for k, v in value.items()}}
        raise WorkflowError(f"{where}: task results can be nested in lists and string-keyed dicts only")


class _Item:
    def __repr__(self) -> str:
        return "<the mapped item>"


_ITEM: Any = _Item()


def _has_ref(value: Any) -> bool:
    if isinstance(value, Ref) or value is _ITEM:
        return True
    if isinstance(value, list | tuple):
        return any(_has_ref(v) for v in value)
    if isinstance(value, dict):
        return any(_has_ref(v) for v in value.values())
    return False
