"""The sandbox rule templates run in: Jinja2's immutable sandbox, bounded while it renders, not after.

Templates are the project author's; the data they run over is not. `{{ 'x' * data.n }}` must not let one
event allocate gigabytes, nor `{% for i in range(data.n) %}` spin for hours. So everything that can build
a value far larger than its inputs is checked *before* it runs: the operators `*`, `**`, `+`, `%` and `~`,
the str methods that pad, replace, join, translate or format, list/tuple/dict literals (which can nest a
value in itself); the text any other call returns is measured as soon as it exists (`encode`, `hex`,
`upper` make at most four times their input, so chaining them stops at the first one over the limit), each `{{ }}` output and each buffered block (macros, `{% set %}` blocks), `range()`,
`lipsum()` and the filters that pad, repeat or join (bounded_filters.py). Every loop iteration and call is
charged to the render's Budget, which also holds a deadline (limits.py). A limit raises RuleError;
templates.py adds which template it was.

Jinja hooks used: SandboxedEnvironment's intercepted_binops / call_binop, call, getattr, getitem and
wrap_str_format; Environment's finalize and code_generator_class; and a CodeGenerator subclass
(its visit_* methods are Jinja internals) that routes `~`, loop iterables and literals through the checks.
"""

from __future__ import annotations

import copy
import functools
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import Environment
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import generate_lorem_ipsum
from markupsafe import EscapeFormatter, Markup

from ..errors import RuleError
from .bounded_filters import bounded_filters
from .limits import (
    HINT,
    MAX_CALL_DEPTH,
    MAX_ITERATIONS,
    active_budget,
    check_binop,
    check_measured,
    check_new,
    check_size,
    check_time,
    format_spec_size,
    joined_size,
    measure,
    remember,
    replaced_size,
    to_int,
)

__all__ = ["BoundedSandbox", "checked_range"]

_LIPSUM_WORD_CHARS = 16  # the longest lorem-ipsum word, with its punctuation and space


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _padded(text: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    return max(len(text), to_int(_arg(args, kwargs, 0, "width", 0)))


def _tabs_expanded(text: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    tab = "\t" if isinstance(text, str) else b"\t"
    return int(len(text) + text.count(tab) * max(to_int(_arg(args, kwargs, 0, "tabsize", 8)), 1))


def _replaced(text: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    count = _arg(args, kwargs, 2, "count", -1)
    return replaced_size(text, _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", ""),
                         count if isinstance(count, int) else -1)


def _translated(text: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    table = _arg(args, kwargs, 0, "table", None)
    if not isinstance(text, str) or not isinstance(table, Mapping):
        return len(text)
    longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
    return len(text) * max(longest, 1)


# str and bytes methods whose result can be far longer than their inputs: how long it would be.
_RESULT_SIZE: dict[str, Callable[[Any, tuple[Any, ...], dict[str, Any]], int]] = {
    "center": _padded, "ljust": _padded, "rjust": _padded, "zfill": _padded,
    "expandtabs": _tabs_expanded, "replace": _replaced, "translate": _translated,
}


def _checked_method_args(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The arguments to call `method` with, once its result is known to be within the limits."""
    if not isinstance(method, types.BuiltinMethodType | types.MethodType):
        return args
    target, name = method.__self__, method.__name__
    if isinstance(target, int) and name == "to_bytes":
        check_new("the result of `to_bytes()`", to_int(_arg(args, kwargs, 0, "length", 1)))
    if not isinstance(target, str | bytes):
        return args
    if name == "join" and args:
        items = list(args[0])  # counted once here, then joined: a generator cannot be walked twice
        check_new("the result of `join()`", joined_size(target, items))
        return (items, *args[1:])
    size_of = _RESULT_SIZE.get(name)
    if size_of is not None:
        check_new(f"the result of `{name}()`", size_of(target, args, kwargs))
    return args


def _check_grown(call: Any, result: str | bytes) -> None:
    """Text returned by a call not predicted above (encode, hex, upper, ...) is a few times its input at
    most: measured as soon as it exists, a chain of them stops at the first result over the limit. Text no
    longer than the method's own string (`body.lower()` of a large event) is no new risk: only growth counts."""
    target = getattr(call, "__self__", None)
    base = len(target) if isinstance(target, str | bytes) else 0
    if len(result) > base:
        what = f"the result of `{getattr(call, '__name__', 'a call')}()`"
        check_size(what, len(result))
        check_new(what, len(result) - base)


class _BoundedFormatter(SandboxedFormatter):
    """str.format() in the sandbox, refusing widths, precisions and values that make it too long."""

    def __init__(self, env: Environment, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._chars = 0

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None:
            check_measured(f"the `!{conversion}` conversion in `format()`", value)
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        width = check_size("a width or precision in `format()`", format_spec_size(format_spec))
        field_chars = width + measure(value)
        self._chars = check_size("the result of `format()`", self._chars + field_chars)
        check_new("a field of `format()`", field_chars)
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(_BoundedFormatter, EscapeFormatter):
    """The same for Markup.format(), which escapes what it inserts."""


def checked_range(*args: int) -> range:
    """`range()` for templates: at most MAX_ITERATIONS items (each loop iteration is charged too)."""
    items = range(*args)
    count = max(0, -((items.start - items.stop) // items.step))
    if count > MAX_ITERATIONS:
        raise RuleError(f"range() of {count} items is over the limit of {MAX_ITERATIONS}; {HINT}")
    return items


def _checked_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    check_new("the result of `lipsum()`", to_int(n) * to_int(max) * _LIPSUM_WORD_CHARS)
    return generate_lorem_ipsum(n, html, min, max)


def _checked_output(value: Any) -> Any:
    """Environment.finalize: each `{{ }}` is measured before Jinja turns it into a string."""
    if value is None or isinstance(value, int | float):  # the common cases, short as text
        return value
    if isinstance(value, str):
        check_size("the output of a `{{ }}` expression", len(value))
    else:  # about to become a new string
        check_new("the output of a `{{ }}` expression", check_measured("the output of a `{{ }}` expression", value))
    return value


class _OutputBuffer(list[str]):
    """The text of a macro, `{% set %}` block or filter block so far, refused once it is too long."""

    def __init__(self) -> None:
        super().__init__()
        self._chars = 0

    def append(self, part: str) -> None:
        self._chars = check_size("the output of a macro or block", self._chars + len(part))
        super().append(part)

    def extend(self, parts: Iterable[str]) -> None:
        for part in parts:
            self.append(part)


class BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with `~`, loop iterables and literals sent through BoundedSandbox's checks."""

    def buffer(self, frame: Frame) -> None:
        # A buffered frame (macro, block) collects its output in a list and joins it at the end: the
        # list counts what it holds, so a loop inside a macro cannot pile up gigabytes before the join.
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        counted = copy.copy(node)
        counted.iter = nodes.Call(nodes.EnvironmentAttribute("counted"), [node.iter], [], None, None,
                                  lineno=node.lineno)
        super().visit_For(counted, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # As Jinja's own, but the parts are measured before they are turned into strings and joined.
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"{func_name}(environment.checked_parts((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self.write("environment.checked_literal(")
        super().visit_List(node, frame)
        self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # the target of `{% for a, b in ... %}` or `{% set a, b = ... %}`
            super().visit_Tuple(node, frame)
            return
        self.write("environment.checked_literal(")
        super().visit_Tuple(node, frame)
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.checked_literal(")
        super().visit_Dict(node, frame)
        self.write(")")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with every operation bounded in size, steps and time (see the module doc)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = BoundedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_checked_output, **options)
        self.globals.update(range=checked_range, lipsum=_checked_lipsum)
        self.filters = bounded_filters(self.filters)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_time()
        size = check_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        remember(result, size)
        return result

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = active_budget()
        budget.step()
        if isinstance(obj, LoopContext) and args:  # `loop(children)` in a recursive loop
            args = (self.counted(args[0]), *args[1:])
        else:
            args = _checked_method_args(obj, args, kwargs)
        budget.depth += 1
        try:
            if budget.depth > MAX_CALL_DEPTH:
                raise RuleError(f"calls nested deeper than {MAX_CALL_DEPTH} levels "
                                f"(a recursive macro or loop); {HINT}")
            result = super().call(context, obj, *args, **kwargs)
        finally:
            budget.depth -= 1
        if isinstance(result, str | bytes):
            _check_grown(obj, result)
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        check_time()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        check_time()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """As the sandbox's own, with a formatter that refuses fields that would make the result too long."""
        if (not isinstance(value, types.MethodType | types.BuiltinMethodType)
                or value.__name__ not in ("format", "format_map") or not isinstance(value.__self__, str)):
            return None
        template: str = value.__self__
        is_format_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                mapping: Any = args[0]
                args, kwargs = (), mapping
            formatter = (_BoundedEscapeFormatter(self, escape=template.escape) if isinstance(template, Markup)
                         else _BoundedFormatter(self))
            return type(template)(formatter.vformat(template, args, kwargs))

        return functools.update_wrapper(wrapper, value)

    # Called by the generated code (BoundedCodeGenerator) as `environment.<name>`.

    def counted(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """A loop's iterable, each item charged to the render's budget."""
        budget = active_budget()
        for item in iterable:
            budget.step()
            yield item

    def output_buffer(self) -> list[str]:
        return _OutputBuffer()

    def checked_parts(self, parts: tuple[Any, ...]) -> tuple[Any, ...]:
        size = 0
        for part in parts:
            size += measure(part)
        check_new("the result of `~`", size)
        return parts

    def checked_literal(self, value: Any) -> Any:
        check_measured("a list, tuple or dict literal", value)
        return value
