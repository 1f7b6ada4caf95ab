"""Expressions over an event, a run's parameters or its results, in CEL (Common Expression Language).

Used wherever a rule or workflow needs a value or a test that a pattern cannot express: a rule's `if:`,
flow-control keys and priorities (`data.customer_id`), a wait step's correlation
(`data.order_id == params.order_id`).

    compile_expression(text) -> Expression      ExpressionError on a syntax error (with its column), or
                                                when the expression is too costly as written
    Expression.evaluate(activation) -> value    ExpressionError when evaluation fails or would cost too much
    Scope(activation)                           the values, converted for CEL once and shared by every
                                                expression evaluated over them (one per event)

A plain dotted path (`data.customer_id`) is evaluated by a lookup, without CEL; a missing field in it is
an ExpressionError like CEL's own "no such key".

The library is common-expression-language (Rust's `cel` crate): compared with cel-python it is 3-13x
faster per evaluation over an event and 100x+ once the event is converted once per Scope, follows the
current spec where JSON needs it (`1 == 1.0`, int/double comparisons), and needs no `exec`. Neither has a
cost limit, so expressions get ours (rules/exprcost.py): nesting and cost bounds at compile time, a cost
priced with the event's sizes before each evaluation. Only the library's built-in functions are
available (no `cel.stdlib` extensions): the cost bound relies on no function building collections.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cel

from ..errors import RuleError
from .exprcost import CostError, CostModel, Sizes, cost_model, measure

__all__ = ["Expression", "ExpressionError", "Scope", "compile_expression"]

MAX_EXPRESSION_CHARS = 2000
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class ExpressionError(RuleError):
    """An expression that does not compile, is too costly, or failed on the values it was given."""


class Scope:
    """Named values (`event`, `data`, `params`, ...) that expressions are evaluated over.

    Converting a value to CEL costs far more than evaluating a typical expression (~50 us for an order
    event's data), so a Scope converts each name once, when the first expression reads it, and every
    later expression over the same Scope reuses it. The values must not change while the Scope is used."""

    __slots__ = ("_bound", "_context", "_measured", "values")

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values
        self._context = cel.Context()
        self._bound: set[str] = set()
        self._measured: dict[tuple[str, ...], tuple[int, int, int]] = {}  # path -> exprcost.measure of its value

    def context(self, names: Iterable[str]) -> Any:
        """The CEL context with `names` (those present) converted."""
        for name in names:
            if name not in self._bound and name in self.values:
                self._context.add_variable(name, self.values[name])
                self._bound.add(name)
        return self._context

    def sizes(self, names: Iterable[str], model: CostModel) -> Sizes:
        """What the values under `names`, and under the field paths `model` prices, measure (for the cost
        limit): each name or path measured once per Scope."""
        whole = [self._measure((name,)) for name in names]
        return Sizes(max((m[0] for m in whole), default=0), max((m[1] for m in whole), default=0),
                     sum(m[2] for m in whole), tuple(self._measure(path)[1] for path in model.paths))

    def _measure(self, path: tuple[str, ...]) -> tuple[int, int, int]:
        found = self._measured.get(path)
        if found is None:
            value: Any = self.values
            for part in path:
                value = value.get(part) if isinstance(value, Mapping) else None
            found = self._measured[path] = measure([value])
        return found


@dataclass(frozen=True)
class Expression:
    """A compiled expression; `path` is set when it is a plain dotted field path."""

    text: str
    path: tuple[str, ...] | None = None
    _program: Any = field(default=None, repr=False, compare=False)
    _names: tuple[str, ...] = field(default=(), repr=False, compare=False)
    _cost: CostModel | None = field(default=None, repr=False, compare=False)

    def evaluate(self, activation: Mapping[str, Any] | Scope) -> Any:
        """The expression's value over `activation` (names -> JSON-like values, or a Scope of them)."""
        scope = activation if isinstance(activation, Scope) else Scope(activation)
        if self.path is not None:
            return _lookup(scope.values, self.path, self.text)
        names = [name for name in self._names if name in scope.values]
        try:
            if self._cost is not None:
                self._cost.check(scope.sizes(names, self._cost), self.text)
            return self._program.execute(scope.context(names))
        except CostError as exc:
            raise ExpressionError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the library raises KeyError, ValueError, ZeroDivisionError...
            raise ExpressionError(f"{self.text!r}: {_message(exc)}") from None


def compile_expression(text: str) -> Expression:
    """Compile `text`; ExpressionError says what is wrong and where."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("an expression must be a non-empty string")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"an expression is limited to {MAX_EXPRESSION_CHARS} characters")
    stripped = text.strip()
    if _PATH.match(stripped):
        return Expression(stripped, tuple(stripped.split(".")))
    try:
        program = cel.compile(stripped)
    except Exception as exc:  # noqa: BLE001 - ValueError with the parser's message
        where = _message(exc).removeprefix(f"Failed to parse expression '{' '.join(stripped.split())}': ")
        raise ExpressionError(f"{stripped!r} is not a valid CEL expression: {where}") from None
    try:
        cost = cost_model(stripped)
    except CostError as exc:
        raise ExpressionError(str(exc)) from None
    return Expression(stripped, None, program, tuple(program.variables()), cost)


def _lookup(activation: Mapping[str, Any], path: tuple[str, ...], text: str) -> Any:
    value: Any = activation
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            raise ExpressionError(f"{text!r}: no such key: {part!r}")
        value = value[part]
    return value


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no such key: {exc.args[0]!r}" if exc.args else "no such key"
    return " ".join(str(exc).split()) or type(exc).__name__


def valid_expression(value: str | None) -> str | None:
    """A pydantic field validator: `value` unchanged if it compiles (or is None), else ValueError saying why."""
    if value is not None:
        try:
            compile_expression(value)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
    return value
