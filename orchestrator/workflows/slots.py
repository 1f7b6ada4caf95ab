"""⑤ ⑥ What a job carries: the values of a task's argument templates that are not written in the spec.

A node's arguments are templates (spec.py): literals (`$lit`) and containers (`$list`, `$dict`) are
structure the spec fixes; every other leaf (`$ref`, `$param`, `$item`, `$tmpl`) is a *slot* whose value
exists only when the task is dispatched. The engine sends the slots' values, in a fixed order, and
nothing else of the task (`collect`); the worker rebuilds the call from its own copy of the spec and
those values (`bind`). So a job cannot say what to run: the kind, the command, the URL template, the
function and every literal come from the worker's project, and a value sits only where the spec put a
slot (one argv element, one environment value), never where structure is. A value for a text template
(`"https://api.example/orders/{{ params.id }}"`) must keep the template's fixed text in place
(`could_render`): a forged job passes no more than event data could, never another host.

Order: the positional templates, then the keyword templates in the spec's order, each depth first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import TaskError
from ..rules.templates import could_render
from .spec import NodeSpec, resolve

__all__ = ["SlotError", "bind", "collect", "slots"]


class SlotError(TaskError):
    """A job's values do not fit the node's slots (a forged job, or one from another version)."""


def slots(template: Any) -> Iterator[Any]:
    """The slot templates inside `template`, in order."""
    if "$lit" in template:
        return
    if "$list" in template:
        for item in template["$list"]:
            yield from slots(item)
    elif "$dict" in template:
        for item in template["$dict"].values():
            yield from slots(item)
    else:
        yield template


def _templates(node: NodeSpec) -> Iterator[Any]:
    yield from node.args
    yield from node.kwargs.values()


def collect(node: NodeSpec, params: Mapping[str, Any], results: Mapping[str, Any]) -> list[Any]:
    """The values of `node`'s slots (TaskError says which reference failed): what its job carries."""
    return [resolve(slot, params, results) for template in _templates(node) for slot in slots(template)]


def bind(node: NodeSpec, values: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """`node`'s call arguments: its literals from the spec, its slots filled from `values` in order."""
    expected = sum(1 for template in _templates(node) for _ in slots(template))
    if len(values) != expected:
        raise SlotError(f"the job carries {len(values)} argument value(s) where task {node.name!r} has "
                        f"{expected}: it was not made from this version of the workflow")
    feed = iter(values)
    args = [_fill(t, feed) for t in node.args]
    kwargs = {k: _fill(t, feed) for k, t in node.kwargs.items()}
    return args, kwargs


def _fill(template: Any, feed: Iterator[Any]) -> Any:
    if "$lit" in template:
        return template["$lit"]
    if "$list" in template:
        return [_fill(item, feed) for item in template["$list"]]
    if "$dict" in template:
        return {k: _fill(item, feed) for k, item in template["$dict"].items()}
    value = next(feed)
    if "$tmpl" in template and not could_render(template["$tmpl"], value):
        raise SlotError(f"the job's value for template {template['$tmpl']!r} is not one it could render (its "
                        "fixed text is not in place): it was not made from this version of the workflow")
    return value
