"""A rule's `if:`: a CEL expression over the event, tested after the rule's pattern holds.

It sees what templates see: `event` (the event view of rules/match.py: CloudEvents attributes,
extensions, data) and `data` (its data). The rule matches only when the expression is `true`; `false`,
another value or an evaluation error (a missing key, a type error, the cost limit of rules/exprcost.py)
mean it does not, with the reason recorded, and never stop the engine.

The conversion of an event to CEL values is done once per event and shared by every rule's `if:` (a
Scope remembered for the last event view seen in this thread).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .expr import Expression, ExpressionError, Scope

__all__ = ["check_if", "if_scope"]

_last = threading.local()


def if_scope(view: Mapping[str, Any]) -> Scope:
    """The Scope of `event` and `data` for an event view; the same object for the same view in a row."""
    cached: tuple[Mapping[str, Any], Scope] | None = getattr(_last, "pair", None)
    if cached is not None and cached[0] is view:
        return cached[1]
    scope = Scope({"event": view, "data": view.get("data")})
    _last.pair = (view, scope)  # holds the view, so its id cannot be reused while cached
    return scope


def check_if(expression: Expression, view: Mapping[str, Any]) -> str | None:
    """None when `expression` is true over the event view; else why the rule does not match."""
    try:
        value = expression.evaluate(if_scope(view))
    except ExpressionError as exc:
        return f"if: {exc}"
    if value is True:
        return None
    if value is False:
        return f"if: {expression.text!r} is false"
    return f"if: {expression.text!r} gave {value!r}, not a boolean"
