"""③ Rule parameters rendered from the event in Jinja2's immutable sandbox.

A value that is exactly one expression, `"{{ event.data.total }}"`, keeps the expression's type (a
number stays a number, a dict a dict). Any other string with `{{ }}` renders to a string. Values
without templates pass through unchanged. Undefined names are errors (StrictUndefined), and event data
is only ever a value in the context, never compiled as a template.

Rendering is bounded while it runs (sandbox.py, limits.py): each render has a deadline and a budget of loop
iterations and calls, no operation may build a value over MAX_VALUE_CHARS, and text is counted as it is
produced, stopping at MAX_RENDERED_BYTES. Exceeding a limit is a RuleError for that event, like any other
template failure.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import jinja2
from jinja2 import nodes

from ..errors import RuleError
from ..jsonutil import JSONValueError, check_json, dumps
from .limits import HINT, MAX_VALUE_CHARS, measure, render_budget
from .sandbox import BoundedSandbox

__all__ = ["MAX_RENDERED_BYTES", "ParamsTemplate", "TemplateCompileError", "could_render"]

MAX_RENDERED_BYTES = 64 * 1024
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


Path = tuple[str | int, ...]


def _show(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


class TemplateCompileError(ValueError):
    """A template in a rule does not compile; `parts` locate it inside the rule, `path` shows it."""

    def __init__(self, parts: Path, message: str) -> None:
        self.parts = parts
        self.path = _show(parts)
        super().__init__(message)


@functools.lru_cache(maxsize=1)
def _env() -> BoundedSandbox:
    return BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class _Expr:
    source: str
    fn: Any
    path: tuple[str, ...] | None = None  # a plain name path (`event.data.total`): looked up without Jinja


_NAME_PATH = re.compile(r"^\s*[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\s*$")
_LITERALS = frozenset(("true", "false", "none", "True", "False", "None"))
_MISSING = object()


def _name_path(expr: str) -> tuple[str, ...] | None:
    """The names of `expr` when it is only names joined by dots, whose value a lookup finds as Jinja would."""
    if not _NAME_PATH.match(expr):
        return None
    path = tuple(expr.strip().split("."))
    return None if path[0] in _LITERALS else path


def _lookup(path: tuple[str, ...], context: Mapping[str, Any]) -> Any:
    """The value at `path` when every step is a key of a plain dict that is not also a dict attribute (where
    Jinja's sandbox finds the item too); else _MISSING, and Jinja evaluates it (its errors, its rules)."""
    value = context.get(path[0], _MISSING)
    for name in path[1:]:
        if type(value) is not dict or name not in value or hasattr(dict, name):
            return _MISSING
        value = value[name]
    return value


@dataclass(frozen=True)
class _Text:
    source: str
    template: jinja2.Template


def _compile(value: Any, path: Path) -> Any:
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        env = _env()
        try:
            single = _SINGLE_EXPRESSION.match(value)
            if single and "{{" not in single["expr"] and "{%" not in single["expr"]:
                return _Expr(value, env.compile_expression(single["expr"], undefined_to_none=False),
                             _name_path(single["expr"]))
            return _Text(value, env.from_string(value))
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateCompileError(path, f"template error: {exc.message}") from None
        except Exception as exc:  # noqa: BLE001 - Jinja evaluates constant expressions while compiling
            raise TemplateCompileError(path, f"template error: {type(exc).__name__}: {exc}") from None
    if isinstance(value, dict):
        return {k: _compile(v, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile(v, (*path, i)) for i, v in enumerate(value)]
    return value


def _render_text(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """The template's text, counted as it is produced: a loop that emits too much stops at the limit."""
    chunks: list[str] = []
    size = 0
    stream = cast(Generator[str, None, None], template.generate(**context))
    try:
        for chunk in stream:
            size += len(chunk)  # characters, never more than its UTF-8 bytes (_check_rendered counts those)
            if size > MAX_RENDERED_BYTES:
                raise RuleError(f"rendered value is over the limit of {MAX_RENDERED_BYTES} bytes "
                                f"(stopped after {size} characters); {HINT}")
            chunks.append(chunk)
    finally:
        stream.close()
    return "".join(chunks)


def _evaluate(value: _Expr | _Text, context: Mapping[str, Any], where: str) -> Any:
    # Templates are the rule author's code running on event data: any error they raise is the rule's.
    with render_budget():
        try:
            out = _lookup(value.path, context) if isinstance(value, _Expr) and value.path else _MISSING
            if out is _MISSING:
                out = value.fn(**context) if isinstance(value, _Expr) else _render_text(value.template, context)
        except RuleError as exc:  # a limit of the sandbox: say which template hit it
            raise RuleError(f"{where}: {exc}") from None
        except jinja2.TemplateError as exc:
            raise RuleError(f"{where}: {exc}") from None
        except Exception as exc:  # noqa: BLE001
            raise RuleError(f"{where}: {type(exc).__name__}: {exc}") from None
    if isinstance(out, jinja2.Undefined):
        raise RuleError(f"{where}: {out._undefined_message}")
    return out


def _check_rendered(out: Any, where: str) -> None:
    # Measured first: check_json and dumps walk a list that holds itself many times over once per copy.
    if not isinstance(out, str) and measure(out) > MAX_VALUE_CHARS:
        raise RuleError(f"{where}: rendered value is more than {MAX_VALUE_CHARS} characters, "
                        f"over the limit of {MAX_RENDERED_BYTES} bytes; {HINT}")
    try:
        check_json(out, where)
    except JSONValueError as exc:
        raise RuleError(str(exc)) from None
    size = len(out.encode()) if isinstance(out, str) else len(dumps(out))
    if size > MAX_RENDERED_BYTES:
        raise RuleError(f"{where}: rendered value is {size} bytes, over the limit of {MAX_RENDERED_BYTES}")


def _render(value: Any, context: Mapping[str, Any], path: Path) -> Any:
    if isinstance(value, _Expr | _Text):
        where = _show(path)
        with render_budget():
            out = _evaluate(value, context, where)
            _check_rendered(out, where)
        return out
    if isinstance(value, dict):
        return {k: _render(v, context, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, context, (*path, i)) for i, v in enumerate(value)]
    return value


@functools.lru_cache(maxsize=1024)
def compile_condition(source: str) -> Callable[[Mapping[str, Any]], bool]:
    """A sandboxed boolean expression (`results.check.count > 0`, braces optional); ValueError if invalid.

    Evaluating it raises RuleError when the expression fails (an undefined name, a type error).
    """
    text = source.strip()
    single = _SINGLE_EXPRESSION.match(text)
    if single:
        text = single["expr"]
    try:
        fn = _env().compile_expression(text, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"invalid expression {source!r}: {exc.message}") from None

    def evaluate(context: Mapping[str, Any]) -> bool:
        return bool(_evaluate(_Expr(source, fn), context, f"condition {source!r}"))

    return evaluate


@functools.lru_cache(maxsize=4096)
def compile_value(source: str) -> Any:
    """A compiled template string (`{{ expr }}` keeps the value's type); TemplateCompileError if invalid."""
    return _compile(source, ())


def render_value(source: str, context: Mapping[str, Any], where: str) -> Any:
    """The JSON value of template `source` in `context`; RuleError says what failed."""
    compiled = compile_value(source)
    if isinstance(compiled, _Expr | _Text):
        return _render(compiled, context, (where,))
    return compiled


class ParamsTemplate:
    """A rule's `params`, compiled once when the rule is loaded."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.source = dict(params)
        self._compiled = {k: _compile(v, ("params", k)) for k, v in params.items()}

    def render(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters for one event, all rendered within one budget; RuleError names the one that failed."""
        with render_budget():
            return {k: _render(v, context, ("params", k)) for k, v in self._compiled.items()}


def could_render(source: str, value: Any) -> bool:
    """Whether template `source` could have rendered `value`: a single `{{ expression }}` any value; other
    templates text that holds their fixed text in place, i.e. the text at the template's top level, which
    always renders, in order (text inside `{% if %}`, `{% for %}` and the like may or may not). A job's
    value for a template is checked with this (workflows/slots.py): a forged job can then pass no more
    than event data could, e.g. never another host in a URL template."""
    compiled = compile_value(source)
    if not isinstance(compiled, _Expr | _Text):
        return bool(value == compiled)
    if isinstance(compiled, _Expr):
        return True
    if not isinstance(value, str):
        return False
    fixed = _fixed_text(source)
    if len(fixed) == 1:
        return value == fixed[0]
    first, *middle, last = fixed
    end = len(value) - len(last)
    if not value.startswith(first) or not value.endswith(last) or end < len(first):
        return False
    position = len(first)
    for piece in middle:  # leftmost matches: if any placement of the pieces fits, this one does
        found = value.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


@functools.lru_cache(maxsize=1024)
def _fixed_text(source: str) -> tuple[str, ...]:
    """The text `source` always renders, cut wherever something else may render: [before, between..., after].
    From Jinja's own parse, so whitespace control, comments, raw blocks and the dropped trailing newline
    are as Jinja applies them."""
    pieces, current = [], ""
    for node in _env().parse(source).body:
        parts = node.nodes if isinstance(node, nodes.Output) else [node]
        for part in parts:
            if isinstance(part, nodes.TemplateData):
                current += part.data
            else:  # an expression, or a tag whose output (if any) is not fixed
                pieces.append(current)
                current = ""
    return (*pieces, current)
