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
        workflow: process_order
        params:                           # rendered from the event in Jinja2's sandbox
          order_id: "{{ event.data.order_id }}"
        enabled: true                     # optional
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .pattern import Pattern, compile_pattern
from .templates import ParamsTemplate

__all__ = ["Match", "MatchResult", "Rule", "RuleConfig"]

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


@dataclass(frozen=True)
class MatchResult:
    rule: str
    outcome: Match
    reason: str | None = None
    stopped_by: str | None = None  # of a PARTIAL match: "disabled", "source", "match" (a pattern) or "if"
    path: str | None = None  # of a failed pattern condition: the field path ("data.order.region")
    seen: Any = None  # ... the value the event had there (None also when missing: see `reason`)
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

    @classmethod
    def from_config(cls, config: RuleConfig) -> Rule:
        return cls(name=config.name, types=config.types, source=config.source, pattern=compile_pattern(config.match),
                   workflow=config.workflow, params=ParamsTemplate(config.params), enabled=config.enabled)
