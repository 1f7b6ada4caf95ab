"""③ Controls on a rule's runs: `concurrency`, `priority`, `singleton` (issue 10 §4). Config and evaluation.

    rules:
      - name: sync-customer
        type: customer.updated
        workflow: sync
        concurrency: {key: data.customer_id, limit: 2}   # at most 2 runs per customer at once; more wait
        priority: "data.plan == 'enterprise' ? 120 : 0"  # a number or a CEL expression, seconds (-600..600)
      - name: rebuild-index
        type: index.changed
        workflow: rebuild
        singleton: {key: data.index, mode: cancel_previous}   # or skip

Keys and priorities are CEL expressions (rules/expr.py) over the event, as `event` and `data` (so
`data.customer_id` and `event.data.customer_id` are the same). A rule has `concurrency` or `singleton`,
not both, and neither when its workflow declares its own concurrency limit (one pool per run:
workflows/pools.py); `priority` needs a limit to order runs by (the rule's or its workflow's).

A key that cannot be evaluated (a missing field) makes the run fail before it starts, as parameters that
do not render do (promise 2: recorded, never silently dropped or run unlimited); guard optional fields in
the expression (`has(data.customer_id) ? data.customer_id : 'none'`). A priority that cannot be evaluated,
or is not a number, counts as 0 and the decision record says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..workflows.pools import KEY_SHOWN_CHARS, Claim, clamp_priority, key_text, pool_id, workflow_claim
from .expr import Expression, ExpressionError, compile_expression, valid_expression

__all__ = ["ConcurrencyConfig", "RunControls", "SingletonConfig", "check_controls", "check_priority",
           "workflow_conflicts"]

MAX_LIMIT = 100_000


class ConcurrencyConfig(BaseModel):
    """`concurrency: {key, limit}`: at most `limit` runs of the rule per key value at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = Field(default=None, description="CEL expression over the event; none: one limit for the rule")
    limit: int = Field(ge=1, le=MAX_LIMIT)

    _key = field_validator("key")(valid_expression)


class SingletonConfig(BaseModel):
    """`singleton: {key, mode}`: at most one run of the rule per key value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = Field(default=None, description="CEL expression over the event; none: one for the rule")
    mode: Literal["skip", "cancel_previous"]

    _key = field_validator("key")(valid_expression)


def check_priority(value: int | str | None) -> int | str | None:
    """A rule's `priority:` as written: a whole number of seconds, or an expression that compiles."""
    if isinstance(value, str):
        return valid_expression(value)
    if value is not None:
        clamp_priority(value)
    return value


def check_controls(concurrency: Any, singleton: Any) -> None:
    """ValueError when a rule declares both `concurrency` and `singleton`."""
    if concurrency is not None and singleton is not None:
        raise ValueError("a rule has `concurrency` or `singleton`, not both (a singleton is a limit of 1 per key)")


def workflow_conflicts(concurrency: Any, singleton: Any, priority: Any, workflow: str,
                       workflow_limit: int | None) -> list[tuple[str, str]]:
    """(field, message) for each control that cannot go with the rule's workflow: a rule limit on a workflow
    with its own limit (a run waits in one pool only), a priority with no limit at all to order runs by."""
    out = []
    for name, control in (("concurrency", concurrency), ("singleton", singleton)):
        if control is not None and workflow_limit is not None:
            out.append((name, f"workflow {workflow!r} has its own concurrency limit ({workflow_limit}): a rule "
                              f"that starts it cannot add `{name}` (remove one of the two limits)"))
    if priority is not None and concurrency is None and singleton is None and workflow_limit is None:
        out.append(("priority", "a priority orders runs waiting for a slot: give the rule a `concurrency` (or its "
                                f"workflow {workflow!r} a concurrency limit)"))
    return out


@dataclass(frozen=True)
class RunControls:
    """A rule's controls, compiled."""

    kind: str | None = None  # "rule" (concurrency) or "singleton"; None: only a priority
    key: Expression | None = None
    limit: int = 1
    mode: str = "wait"
    priority: int | Expression = 0

    @classmethod
    def from_config(cls, concurrency: ConcurrencyConfig | None, singleton: SingletonConfig | None,
                    priority: int | str | None) -> RunControls | None:
        if concurrency is None and singleton is None and priority is None:
            return None
        rank: int | Expression = compile_expression(priority) if isinstance(priority, str) else priority or 0
        if concurrency is not None:
            return cls("rule", _compiled(concurrency.key), concurrency.limit, "wait", rank)
        if singleton is not None:
            return cls("singleton", _compiled(singleton.key), 1, singleton.mode, rank)
        return cls(priority=rank)

    def claim(self, rule: str, workflow: str, workflow_limit: int | None,
              activation: Mapping[str, Any]) -> tuple[Claim | None, str | None]:
        """The pool a run of `rule` claims for the event in `activation`, and why its priority is 0 when its
        expression failed. ExpressionError when the key cannot be evaluated."""
        rank, note = self._priority(activation)
        if self.kind is None:
            claim = workflow_claim(workflow, workflow_limit)
            return (Claim(claim.pool, claim.limit, claim.kind, claim.name, priority=rank) if claim else None), note
        try:
            key = key_text(self.key.evaluate(activation)) if self.key is not None else ""
        except ExpressionError as exc:
            what = "concurrency" if self.kind == "rule" else "singleton"
            raise ExpressionError(f"the {what} key cannot be evaluated: {exc}") from None
        return Claim(pool_id(self.kind, rule, key), self.limit, self.kind, rule, key[:KEY_SHOWN_CHARS], rank,
                     self.mode), note

    def _priority(self, activation: Mapping[str, Any]) -> tuple[int, str | None]:
        if not isinstance(self.priority, Expression):
            return clamp_priority(self.priority), None
        try:
            return clamp_priority(self.priority.evaluate(activation)), None
        except (ExpressionError, ValueError) as exc:
            return 0, f"priority {self.priority.text!r} counted as 0: {exc}"


def _compiled(text: str | None) -> Expression | None:
    return compile_expression(text) if text is not None else None
