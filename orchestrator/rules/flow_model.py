"""③ Flow control that holds events back, as declared on a rule: `debounce`, `batch`, `throttle`, `rate_limit`.

    debounce:   {key, period_s, max_wait_s}    one run once the key was quiet for period_s (or max_wait_s
                                               after its first held event); the run gets every event
    batch:      {max_size, timeout_s, key}     one run per max_size events, or timeout_s after the first
    throttle:   {key, limit, period_s, burst}  GCRA: `limit` starts per `period_s`, `burst` at once; excess
                                               events start later, in order, none dropped
    rate_limit: {key, limit, period_s}         at most `limit` starts in any `period_s` window; excess
                                               events are dropped (with a record)

A rule takes at most one of them (`check_one`): each decides on its own when an event's run starts, and
two deciders would disagree. They do combine with the controls that act on a run once it exists
(a workflow's concurrency limit, a schedule's overlap policy).

A key is an expression over the event (rules/expr.py): `data.customer_id`, or CEL such as
`data.region + "/" + data.customer_id`. Without a key, all the rule's events share one. A key that cannot
be evaluated (a missing field) is the empty key "", and the decision record says why (`key_error`).
The engine side is orchestrator/flow/.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..jsonutil import dumps
from .expr import Expression, ExpressionError, compile_expression, valid_expression

__all__ = ["CONTROLS", "BatchConfig", "DebounceConfig", "HoldControl", "RateLimitConfig", "ThrottleConfig",
           "check_one", "compile_control", "shown_key"]

CONTROLS = ("debounce", "batch", "throttle", "rate_limit")
WEEK_S = 7 * 86400.0
MAX_BATCH = 1000
MAX_WINDOW_LIMIT = 10_000  # rate_limit keeps the times of the last `limit` starts per key
KEY_MAX_CHARS = 200


class _Keyed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = Field(default=None, description="Expression over the event (data.customer_id); "
                            "each value has its own state. None: one for the whole rule.")

    _compiles = field_validator("key")(valid_expression)


class DebounceConfig(_Keyed):
    period_s: float = Field(gt=0, le=WEEK_S, description="Quiet time after the last event before the run.")
    max_wait_s: float | None = Field(default=None, gt=0, le=WEEK_S,
                                     description="Longest wait after the first held event.")

    @field_validator("max_wait_s")
    @classmethod
    def _not_shorter(cls, value: float | None, info: Any) -> float | None:
        period = info.data.get("period_s")
        if value is not None and period is not None and value < period:
            raise ValueError(f"max_wait_s ({value:g}) must be at least period_s ({period:g})")
        return value


class BatchConfig(_Keyed):
    max_size: int = Field(ge=1, le=MAX_BATCH, description="Events that make a full batch (released at once).")
    timeout_s: float = Field(gt=0, le=WEEK_S, description="Longest wait after the first event of a batch.")


class ThrottleConfig(_Keyed):
    limit: int = Field(ge=1, le=1_000_000, description="Runs that may start per period_s.")
    period_s: float = Field(gt=0, le=WEEK_S)
    burst: int = Field(default=1, ge=1, le=1_000_000, description="Runs that may start at once when idle.")


class RateLimitConfig(_Keyed):
    limit: int = Field(ge=1, le=MAX_WINDOW_LIMIT, description="Runs that may start in any period_s window.")
    period_s: float = Field(gt=0, le=WEEK_S)


def check_one(declared: Mapping[str, Any]) -> None:
    """ValueError unless at most one hold-back control is declared (`declared`: control -> config or None)."""
    found = [name for name in CONTROLS if declared.get(name) is not None]
    if len(found) > 1:
        raise ValueError(f"{' and '.join(found)} cannot be combined on one rule: each decides when an event's run "
                         "starts (split the rule in two, or use one of them)")


@dataclass(frozen=True)
class HoldControl:
    """A rule's hold-back control, compiled: what the engine's decide script is given (flow/decide.py)."""

    kind: str  # one of CONTROLS
    key: Expression | None
    period_ms: int = 0  # debounce: quiet period; throttle, rate_limit: the period
    max_wait_ms: int = 0  # debounce: longest wait (0: none); batch: timeout
    limit: int = 0  # throttle, rate_limit: starts per period; batch: max_size
    burst: int = 1  # throttle
    config: dict[str, Any] = field(default_factory=dict, compare=False)  # as written, for messages

    def key_of(self, body: Mapping[str, Any]) -> tuple[str, str | None]:
        """The key of one event (its stored body): (key, None), or ("", why) when it cannot be evaluated.
        The key is whole: its state is found by a hash of all of it, so keys alike in their first
        KEY_MAX_CHARS never share one; only what records and holds show of it is cut (`shown_key`)."""
        if self.key is None:
            return "", None
        activation = {**body, "event": body}
        try:
            value = self.key.evaluate(activation)
        except ExpressionError as exc:
            return "", str(exc)[:KEY_MAX_CHARS]
        text = value if isinstance(value, str) else dumps(value).decode()
        return text, None


def shown_key(key: str) -> str:
    """What a decision record, a hold and `orch runs show` keep of a key: its first KEY_MAX_CHARS."""
    return key[:KEY_MAX_CHARS]


def compile_control(config: Any) -> HoldControl | None:
    """The hold-back control of a RuleConfig, or None when it declares none."""
    for kind in CONTROLS:
        declared = getattr(config, kind, None)
        if declared is None:
            continue
        key = compile_expression(declared.key) if declared.key is not None else None
        written = declared.model_dump(exclude_none=True)
        if kind == "debounce":
            return HoldControl(kind, key, period_ms=_ms(declared.period_s), max_wait_ms=_ms(declared.max_wait_s or 0),
                               config=written)
        if kind == "batch":
            return HoldControl(kind, key, max_wait_ms=_ms(declared.timeout_s), limit=declared.max_size, config=written)
        if kind == "throttle":
            return HoldControl(kind, key, period_ms=_ms(declared.period_s), limit=declared.limit, burst=declared.burst,
                               config=written)
        return HoldControl(kind, key, period_ms=_ms(declared.period_s), limit=declared.limit, config=written)
    return None


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000)) if seconds else 0
