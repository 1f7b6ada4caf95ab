"""Expressions over an event, a run's parameters or its results, in CEL (Common Expression Language).

Used wherever a rule or workflow needs a value or a test that a pattern cannot express: a rule's `if:`,
flow-control keys and priorities (`data.customer_id`), a wait step's correlation
(`data.order_id == params.order_id`).

    compile_expression(text) -> Expression      ExpressionError on a syntax error (with its column)
    Expression.evaluate(activation) -> value    ExpressionError when evaluation fails

A plain dotted path (`data.customer_id`) is evaluated by a lookup, without CEL; a missing field in it is
an ExpressionError like CEL's own "no such key".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cel

from ..errors import RuleError

__all__ = ["Expression", "ExpressionError", "compile_expression"]

MAX_EXPRESSION_CHARS = 2000
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class ExpressionError(RuleError):
    """An expression that does not compile, or that failed on the values it was given."""


@dataclass(frozen=True)
class Expression:
    """A compiled expression; `path` is set when it is a plain dotted field path."""

    text: str
    path: tuple[str, ...] | None = None
    _program: Any = field(default=None, repr=False, compare=False)

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """The expression's value over `activation` (names -> JSON-like values)."""
        if self.path is not None:
            return _lookup(activation, self.path, self.text)
        try:
            return self._program.execute(dict(activation))
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
        raise ExpressionError(f"{stripped!r} is not a valid CEL expression: {_message(exc)}") from None
    return Expression(stripped, None, program)


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
