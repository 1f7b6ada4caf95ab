"""③ Rules: which events start which workflow, with which parameters.

In a project's `rules/*.yaml`:

    rules:
      - name: process-new-orders          # unique in the project
        type: order.created               # or a list; exact types or globs (order.*)
        source: /shop/*                   # optional glob on the event source
        match:                            # optional: an EventBridge pattern (rules/pattern.py)
          data.region: eu                 #   exact values; a list means any of them
          data.channel: [web, app]
          data.amount: {numeric: [">", 0]}
        if: data.amount > 100.0 && data.items.exists(i, i.qty > 1)   # optional CEL test (rules/ifexpr.py)
        workflow: process_order
        params:                           # rendered from the event in Jinja2's sandbox
          order_id: "{{ event.data.order_id }}"
        enabled: true                     # optional
        debounce: {key: data.customer_id, period_s: 30}   # optional: one of debounce, batch, throttle,
                                                          # rate_limit (rules/flow_model.py)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

from .controls import ConcurrencyConfig, RunControls, SingletonConfig, check_controls, check_priority
from .expr import Expression, compile_expression, valid_expression
from .flow_model import (
    BatchConfig,
    DebounceConfig,
    HoldControl,
    RateLimitConfig,
    ThrottleConfig,
    check_one,
    compile_control,
)
from .pattern import Pattern, compile_pattern
from .templates import ParamsTemplate

__all__ = ["MISSING", "Match", "MatchResult", "Rule", "RuleConfig"]

RULE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$"


class RuleConfig(BaseModel):
    """One rule as written in YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=RULE_NAME)
    type: str | list[str] = Field(description="Event type(s) the rule listens to: exact, or a glob like order.*")
    source: str | None = Field(default=None, min_length=1, description="Glob the event source must match.")
    match: dict[str, Any] = Field(default_factory=dict, description="An EventBridge pattern over the event's fields.")
    workflow: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    description: str | None = None
    # flow control that holds events back (rules/flow_model.py, engine side orchestrator/flow/): one at most
    debounce: DebounceConfig | None = None
    batch: BatchConfig | None = None
    throttle: ThrottleConfig | None = None
    rate_limit: RateLimitConfig | None = None

    @model_validator(mode="after")
    def _one_hold(self) -> RuleConfig:
        check_one({"debounce": self.debounce, "batch": self.batch, "throttle": self.throttle,
                   "rate_limit": self.rate_limit})
        return self

    # `if:` (a Python keyword, hence the alias): a CEL test over `event` and `data`, after the conditions.
    if_: str | None = Field(default=None, alias="if", description="CEL expression that must be true.")

    _if_compiles = field_validator("if_")(valid_expression)

    # -- controls on the rule's runs (rules/controls.py): keyed concurrency, priority, singleton
    concurrency: ConcurrencyConfig | None = None
    priority: StrictInt | StrictStr | None = Field(default=None,
                                                   description="Seconds ahead in a slot's line, or a CEL expression")
    singleton: SingletonConfig | None = None

    _priority = field_validator("priority")(check_priority)

    @model_validator(mode="after")
    def _controls(self) -> RuleConfig:
        check_controls(self.concurrency, self.singleton)
        return self

    @field_validator("type")
    @classmethod
    def _types(cls, value: str | list[str]) -> str | list[str]:
        types = [value] if isinstance(value, str) else value
        if not types or any(not t or not isinstance(t, str) for t in types):
            raise ValueError("give at least one non-empty event type")
        return value

    @property
    def types(self) -> tuple[str, ...]:
        return (self.type,) if isinstance(self.type, str) else tuple(self.type)


class Match(enum.Enum):
    """How far a rule matched an event."""

    NONE = "none"        # the event type is not one the rule listens to
    PARTIAL = "partial"  # the type matched, a source or field condition did not (reason says which)
    FULL = "full"


class _Missing:
    """What `MatchResult.seen` holds when the event has no value at the failed condition's path."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class MatchResult:
    rule: str
    outcome: Match
    reason: str | None = None
    stopped_by: str | None = None  # of a PARTIAL match: "disabled", "source", "match" (a pattern) or "if"
    path: str | None = None  # of a failed pattern condition: the field path ("data.order.region")
    seen: Any = None  # ... the value the event had there (MISSING when it has no such field)
    expected: Any = None  # ... and what the pattern asked for, as written


@dataclass(frozen=True)
class Rule:
    """A loaded rule: its pattern and parameters compiled (PatternError, TemplateCompileError otherwise)."""

    name: str
    types: tuple[str, ...]
    source: str | None
    pattern: Pattern
    workflow: str
    params: ParamsTemplate
    enabled: bool = True
    hold: HoldControl | None = None  # debounce, batch, throttle or rate_limit (rules/flow_model.py)
    if_expr: Expression | None = None  # the compiled `if:`
    controls: RunControls | None = None  # concurrency, priority, singleton

    @classmethod
    def from_config(cls, config: RuleConfig) -> Rule:
        return cls(name=config.name, types=config.types, source=config.source, pattern=compile_pattern(config.match),
                   workflow=config.workflow, params=ParamsTemplate(config.params), enabled=config.enabled,
                   hold=compile_control(config),
                   if_expr=compile_expression(config.if_) if config.if_ is not None else None,
                   controls=RunControls.from_config(config.concurrency, config.singleton, config.priority))
