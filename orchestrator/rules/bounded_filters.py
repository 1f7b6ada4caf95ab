"""Jinja2's built-in filters for the bounded sandbox, with those that can build far more than they get checked.

`'x'|center(data.n)`, `text|indent(data.n)`, `'%0*d'|format(data.n, 1)`, `items|batch(3, fill)`,
`items|slice(data.n)`, `text|wordwrap(1, wrapstring=big)`, `text|replace('', big)`, `items|join(big)`,
`value|tojson(indent=data.n)` and `lists|sum(start=[])` each check the size of their result before they
build it. Every filter also checks the render's deadline, measures its input first when it turns it into
text (a list holding itself 2**40 times over is small in memory, not as text), and refuses a new string
over MAX_VALUE_CHARS, charging it to the render's MAX_NEW_CHARS (`range(1000)|map('center', 200000)`).
`pprint` is left out: its output grows with nesting depth times width, and it is a debugging aid with no
use in a rule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import filters
from jinja2.environment import Environment
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.utils import pass_environment, pass_eval_context
from markupsafe import soft_str

from ..errors import RuleError
from .limits import (
    HINT,
    MAX_ITERATIONS,
    check_binop,
    check_measured,
    check_new,
    check_size,
    check_time,
    joined_size,
    measure,
    printf_size,
    remember,
    replaced_size,
    to_int,
)

__all__ = ["bounded_filters"]

_LEFT_OUT = frozenset({"pprint"})

# Filters that turn their input into text: the input is measured before they do.
_STRINGIFYING = frozenset({
    "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower", "replace", "safe",
    "string", "striptags", "title", "trim", "truncate", "upper", "urlencode", "urlize", "wordcount",
    "wordwrap", "xmlattr", "tojson",
})

_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines() splits on


def _lines(text: str) -> int:
    return 1 + sum(text.count(c) for c in _LINE_BREAKS)


def _center(value: Any, width: int = 80) -> str:
    check_size("the result of `center`", max(len(soft_str(value)), to_int(width)))
    return filters.do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = s if isinstance(s, str) else ""
    step = len(width) if isinstance(width, str) else to_int(width)
    check_size("the result of `indent`", len(text) + _lines(text) * step)
    return filters.do_indent(s, width, first, blank)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    check_size("the result of `format`", printf_size(soft_str(value), kwargs or args))
    return filters.do_format(value, *args, **kwargs)


def _batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Any:
    if fill_with is not None:
        check_new("the fill of `batch`", max(to_int(linecount) - 1, 0) * max(measure(fill_with), 1))
    return filters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    if to_int(slices) > MAX_ITERATIONS:
        raise RuleError(f"`slice` into {slices} slices is over the limit of {MAX_ITERATIONS}; {HINT}")
    if fill_with is not None:
        check_new("the fill of `slice`", to_int(slices) * max(measure(fill_with), 1))
    return filters.sync_do_slice(value, slices, fill_with)


@pass_environment
def _wordwrap(environment: Environment, s: str, width: int = 79, break_long_words: bool = True,
              wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
    text = s if isinstance(s, str) else ""
    joint = environment.newline_sequence if wrapstring is None else wrapstring
    # Two lines in a row hold at least `width` characters, whatever the words.
    lines = min(len(text) + 1, 2 * len(text) // max(to_int(width), 1) + _lines(text))
    check_size("the result of `wordwrap`", len(text) + lines * (len(joint) if isinstance(joint, str) else 0))
    return filters.do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: str, old: str, new: str, count: int | None = None) -> str:
    wanted = -1 if count is None else to_int(count)
    check_size("the result of `replace`", replaced_size(soft_str(s), soft_str(old), soft_str(new), wanted))
    return filters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    if attribute is not None:
        value = map(filters.make_attrgetter(eval_ctx.environment, attribute), value)
    items = list(value)
    check_size("the result of `join`", joined_size(d, items))
    return filters.sync_do_join(eval_ctx, items, d)


@pass_environment
def _sum(environment: Environment, iterable: Iterable[Any], attribute: str | int | None = None,
         start: Any = 0) -> Any:
    # Python's sum() is one C call that cannot be stopped; this one adds like `+` does, item by item.
    if isinstance(start, str):
        raise TypeError("sum() can't sum strings [use ''.join(seq) instead]")
    if attribute is not None:
        iterable = map(filters.make_attrgetter(environment, attribute), iterable)
    total = start
    for item in iterable:
        check_time()
        size = check_binop("+", total, item)
        total = total + item
        remember(total, size)
    return total


@pass_eval_context
def _tojson(eval_ctx: EvalContext, value: Any, indent: Any = None) -> Any:
    check_measured("the result of `tojson`", value, len(indent) if isinstance(indent, str) else to_int(indent))
    return filters.do_tojson(eval_ctx, value, indent)


_REPLACEMENTS: dict[str, Callable[..., Any]] = {
    "center": _center, "indent": _indent, "format": _format, "batch": _batch, "slice": _slice,
    "wordwrap": _wordwrap, "replace": _replace, "join": _join, "sum": _sum, "tojson": _tojson,
}


def _value_of(args: tuple[Any, ...]) -> Any:
    """A filter's input: its first argument, after the context Jinja passes to some filters."""
    if args and isinstance(args[0], Context | EvalContext | Environment):
        return args[1] if len(args) > 1 else None
    return args[0] if args else None


def _guarded(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    stringifies = name in _STRINGIFYING

    @functools.wraps(fn)  # keeps Jinja's pass_context / pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        check_time()
        if stringifies:
            check_measured(f"the input of the `{name}` filter", _value_of(args))
        out = fn(*args, **kwargs)
        if isinstance(out, str) and out is not _value_of(args):  # new text: `map('center', n)` makes many
            check_new(f"the result of the `{name}` filter", len(out))
        return out

    return guarded


def bounded_filters(builtin: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """`builtin` (an environment's filters) with each one guarded and the amplifying ones replaced."""
    chosen = {name: _REPLACEMENTS.get(name, fn) for name, fn in builtin.items() if name not in _LEFT_OUT}
    return {name: _guarded(name, fn) for name, fn in chosen.items()}
