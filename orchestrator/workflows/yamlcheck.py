"""④ The values of a YAML workflow (yamlflows.py), checked and stored as argument templates.

A string holding `{{ }}` or `{% %}` becomes `{"$tmpl": source, "refs": [tasks]}`; its parsed Jinja AST
says which task results it reads (`results.<task>`, `results['<task>']`: Getattr/Getitem on the name
`results`), which become dependencies, and which parameters (`params.<name>`); names a template may not
see are errors. Every other value is a JSON literal (`$lit`), and lists and mappings holding templates
become `$list` / `$dict`. Problems raise `Invalid` with the path of the value inside the YAML document.
"""

from __future__ import annotations

import inspect
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
import jinja2.meta
from jinja2 import nodes

from ..errors import did_you_mean
from ..jsonutil import JSONValueError, check_json
from ..rules.templates import TemplateCompileError, compile_condition, compile_value
from .dsl import Task
from .spec import MISSING, ParamSpec

__all__ = ["Invalid", "Parts", "Scope", "as_text", "bind", "split_command", "encode", "encode_condition", "encode_map",
           "is_template", "params_of", "unknown_task"]

Parts = tuple[str | int, ...]

_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
_GLOBALS = frozenset(jinja2.defaults.DEFAULT_NAMESPACE)  # range, dict, namespace, ...
_PARSER = jinja2.Environment()
_VALUE_NAMES = frozenset({"params", "results", "event", "events"})  # events: a hold's (flow/)
_CONDITION_NAMES = frozenset({"params", "results", "event", "events"})  # what `when` is evaluated with (advance.py)


class Invalid(Exception):
    """A problem at `parts`, a path inside the YAML document."""

    def __init__(self, parts: Parts, message: str) -> None:
        self.parts = parts
        super().__init__(message)


@dataclass
class Scope:
    """What the templates of one task may use, and what they were found to read."""

    tasks: dict[str, int]  # the workflow's task names -> their index
    params: set[str] | None  # None when the parameters are invalid (reported already)
    mapped: bool = False  # the task has `map:`, so templates see `item`
    refs: set[str] = field(default_factory=set)
    uses_item: bool = False


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def encode(value: Any, parts: Parts, scope: Scope) -> Any:
    """The stored template of a YAML value; the results it reads are added to `scope.refs`."""
    if isinstance(value, str) and is_template(value):
        return {"$tmpl": value, "refs": sorted(_template(value, parts, scope))}
    if isinstance(value, list):
        items = [encode(v, (*parts, i), scope) for i, v in enumerate(value)]
        if all("$lit" in t for t in items):
            return {"$lit": [t["$lit"] for t in items]}
        return {"$list": items}
    if isinstance(value, dict):
        entries = {k: encode(v, (*parts, k), scope) for k, v in value.items()}
        if all("$lit" in t for t in entries.values()):
            return {"$lit": {k: t["$lit"] for k, t in entries.items()}}
        return {"$dict": entries}
    try:
        check_json(value)
    except JSONValueError as exc:
        raise Invalid(parts, f"not a JSON value: {exc} (quote it to pass a string)") from None
    return {"$lit": value}


def encode_map(value: Any, parts: Parts, scope: Scope) -> Any:
    """`map:`: a list, or one `{{ expression }}` giving one (it cannot see `item`)."""
    if not isinstance(value, list) and not (isinstance(value, str) and _SINGLE.match(value)):
        raise Invalid(parts, 'map: is a list, or a template giving one ("{{ results.fetch.items }}")')
    return encode(value, parts, Scope(scope.tasks, scope.params, refs=scope.refs))


def encode_condition(source: str, parts: Parts, scope: Scope) -> str:
    """`when:`, checked: stored as written; the results it reads are dependencies too."""
    try:
        compile_condition(source)
    except ValueError as exc:
        raise Invalid(parts, str(exc)) from None
    single = _SINGLE.match(source.strip())
    _template("{{ " + (single["expr"] if single else source) + " }}", parts,
              Scope(scope.tasks, scope.params, refs=scope.refs), _CONDITION_NAMES)
    return source


_BLOCK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


def split_command(text: str, parts: Parts) -> list[str]:
    """A command string split like a shell would (shlex), each template kept whole inside one argument,
    so a rendered value is always one argv element, whatever spaces or quotes it holds."""
    blocks: list[str] = []

    def hold(match: re.Match[str]) -> str:
        blocks.append(match.group())
        return f"\x00{len(blocks) - 1}\x00"

    try:
        pieces = shlex.split(_BLOCK.sub(hold, text))
    except ValueError as exc:
        raise Invalid(parts, f"cannot split the command like a shell would: {exc}") from None
    return [re.sub(r"\x00(\d+)\x00", lambda m: blocks[int(m.group(1))], piece) for piece in pieces]


def as_text(value: str) -> str:
    """A command argument that is exactly one `{{ expression }}` renders to text, not to the value's type."""
    single = _SINGLE.match(value)
    if single and not is_template(single["expr"]):
        return "{{ (" + single["expr"].strip() + ") | string }}"
    return value


def _template(source: str, parts: Parts, scope: Scope, allowed: frozenset[str] | None = None) -> set[str]:
    try:
        tree = _PARSER.parse(source)
        compile_value(source)  # what the engine compiles when it dispatches the task
    except jinja2.TemplateSyntaxError as exc:
        raise Invalid(parts, f"template error: {exc.message}") from None
    except TemplateCompileError as exc:
        raise Invalid(parts, str(exc)) from None
    if allowed is None:
        allowed = _VALUE_NAMES | ({"item"} if scope.mapped else set())
    for name in sorted(jinja2.meta.find_undeclared_variables(tree) - _GLOBALS):
        if name not in allowed:
            raise Invalid(parts, _unknown_name(name, allowed))
        scope.uses_item = scope.uses_item or name == "item"
    refs = _lookups(tree, "results", parts)
    for ref in sorted(refs - set(scope.tasks)):
        raise Invalid(parts, unknown_task(ref, scope.tasks, "results."))
    if scope.params is not None:
        for param in sorted(_lookups(tree, "params", None) - scope.params):
            raise Invalid(parts, f"unknown parameter {param!r}{did_you_mean(param, scope.params)} "
                                 f"(parameters: {', '.join(sorted(scope.params)) or 'none'})")
    scope.refs |= refs
    return refs


def _lookups(tree: nodes.Template, root: str, parts: Parts | None) -> set[str]:
    """The keys looked up in `root` (`root.key`, `root['key']`); with `parts`, any other use is an error."""
    found: set[str] = set()
    used: set[int] = set()
    lookups: list[tuple[nodes.Expr, Any]] = [(n.node, n.attr) for n in tree.find_all(nodes.Getattr)]
    lookups += [(n.node, getattr(n.arg, "value", None)) for n in tree.find_all(nodes.Getitem)]
    for target, key in lookups:
        if isinstance(target, nodes.Name) and target.name == root and isinstance(key, str):
            found.add(key)
            used.add(id(target))
    if parts is not None:
        for name in tree.find_all(nodes.Name):
            if name.name == root and name.ctx == "load" and id(name) not in used:
                raise Invalid(parts, f"{root} is read by task name, {root}.<task> or {root}['<task>']: "
                                     "that is how the task's dependencies are known")
    return found


def params_of(value: Any, parts: Parts) -> list[ParamSpec]:
    """`params:`, a list of names and {name, default} mappings."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(parts, "params: is a list of names or {name, default} mappings")
    out: list[ParamSpec] = []
    for i, param in enumerate(value):
        name, default = _param(param, (*parts, i))
        if not isinstance(name, str) or not _PARAM_NAME.match(name):
            raise Invalid((*parts, i), "a parameter is a name (letters, digits and _) or a {name, default} mapping")
        if name in {p.name for p in out}:
            raise Invalid((*parts, i), f"parameter {name!r} is declared twice")
        try:
            check_json(None if default is MISSING else default)
        except JSONValueError as exc:
            raise Invalid((*parts, i, "default"), f"not a JSON value: {exc}") from None
        out.append(ParamSpec(name, default))
    return out


def _param(param: Any, parts: Parts) -> tuple[Any, Any]:
    if isinstance(param, str):
        return param, MISSING
    if not isinstance(param, dict):
        return None, MISSING
    for key in sorted(set(param) - {"name", "default"}):
        raise Invalid((*parts, key), f"unknown field{did_you_mean(key, ('name', 'default'))} "
                                     "(a parameter has a name and an optional default)")
    return param.get("name"), param.get("default", MISSING)


def bind(task: Task[Any, Any], given: set[str], scope: Scope, parts: Parts, has_with: bool) -> str | None:
    """Check `with:` against the task function's signature; the parameter that gets the mapped item, if any.

    In a task with `map:` whose `with:` does not use `{{ item }}`, the item goes to the first parameter,
    as with `task.map(...)` in Python.
    """
    params = inspect.signature(task.fn).parameters
    named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in sorted(given - set(named)):
            raise Invalid((*parts, "with", key), f"task {task.name!r} has no parameter {key!r}"
                                                 f"{did_you_mean(key, named)} (parameters: {', '.join(named)})")
    item_param = None
    if scope.mapped and not scope.uses_item:
        first = next(iter(params), None)
        if first is None or first not in named or first in given:
            raise Invalid((*parts, "map"), 'pass the mapped item to a parameter in with: ("{{ item }}"); '
                                           "without that it goes to the first parameter, which must be left out")
        item_param = first
    missing = [n for n, p in params.items() if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               and n not in given and n != item_param]
    if missing:
        hint = ' (pass the mapped item as "{{ item }}")' if scope.mapped else ""
        raise Invalid((*parts, "with" if has_with else "uses"),
                      f"task {task.name!r} needs parameter {', '.join(map(repr, missing))}{hint}")
    return item_param


def unknown_task(name: str, tasks: Mapping[str, int], prefix: str = "") -> str:
    return f"unknown task {prefix}{name}{did_you_mean(name, tasks)} (tasks of this workflow: {', '.join(tasks)})"


def _unknown_name(name: str, allowed: Iterable[str]) -> str:
    if name == "item" and "event" in allowed:
        return "item is only defined in a task with map:"
    hint = " (event data is event.data)" if name == "data" else did_you_mean(name, allowed)
    return f"unknown name {name!r}{hint} (templates here see {', '.join(sorted(allowed))})"

