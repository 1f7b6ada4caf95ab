"""④ Per-task policies: retries with backoff, and when a task runs given its upstream tasks. Pure.

Retries: a failed attempt is retried while attempts remain, the error may be retried (a worker can
say it may not: an HTTP 4xx, an unknown task) and, if `on` lists error types, its type is one of them.
The delay before retry n (1-based) is `min(max_delay_s, backoff_s * factor ** (n - 1))`, with "equal
jitter": half of it fixed, the other half spread evenly, drawn from a hash of (run, task, attempt) so the
engine's decision is a pure function of its inputs (and the same on every engine).

Dependency policies (`depends`):
    all_succeeded   run when every upstream task succeeded (default); skipped when one failed or was skipped
    all_finished    run when every upstream task finished, whatever its state (upstream results that do
                    not exist are passed as None)
    any_failed      run as soon as an upstream task failed (cleanup, notification); skipped when every
                    upstream task finished and none failed
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import WorkflowError

__all__ = ["DEPENDS", "RetryPolicy"]

DEPENDS = ("all_succeeded", "all_finished", "any_failed")


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed task attempt is retried."""

    max_retries: int = 0
    backoff_s: float = 1.0
    factor: float = 2.0
    max_delay_s: float = 300.0
    jitter: bool = True
    on: tuple[str, ...] = ()  # error types (exception class names) that retry; empty: any error

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.max_retries > 1000:
            raise WorkflowError(f"retries must be between 0 and 1000, not {self.max_retries}")
        if self.backoff_s < 0 or self.max_delay_s < 0 or self.factor < 1:
            raise WorkflowError("retry backoff_s and max_delay_s must be >= 0 and factor >= 1")

    def should_retry(self, attempt: int, error_type: str | None, retryable: bool | None) -> bool:
        """Whether attempt number `attempt` (1-based), which failed, gets another attempt."""
        if attempt > self.max_retries or retryable is False:
            return False
        return not self.on or (error_type or "") in self.on

    def delay_s(self, attempt: int, seed: str) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based); `seed` spreads the jitter."""
        base = min(self.max_delay_s, self.backoff_s * self.factor ** (attempt - 1))
        if not self.jitter:
            return base
        fraction = int.from_bytes(hashlib.blake2b(f"{seed}:{attempt}".encode(), digest_size=4).digest()) / 2**32
        return base / 2 + fraction * base / 2

    def to_dict(self) -> dict[str, Any]:
        return {"max_retries": self.max_retries, "backoff_s": self.backoff_s, "factor": self.factor,
                "max_delay_s": self.max_delay_s, "jitter": self.jitter, "on": list(self.on)}

    @classmethod
    def from_value(cls, value: RetryPolicy | int | Mapping[str, Any] | None) -> RetryPolicy | None:
        """A policy from what users write: a number of retries, a mapping of the fields, or a policy."""
        if value is None or isinstance(value, RetryPolicy):
            return value
        if isinstance(value, bool):
            raise WorkflowError("retries must be a number or a mapping, not a boolean")
        if isinstance(value, int):
            return cls(max_retries=value)
        if isinstance(value, Mapping):
            known = set(cls.__dataclass_fields__)
            unknown = sorted(set(value) - known - {"max"})
            if unknown:
                raise WorkflowError(f"unknown retry option {', '.join(unknown)} (options: {', '.join(sorted(known))})")
            fields = {("max_retries" if k == "max" else k): v for k, v in value.items()}
            if "on" in fields:
                on = fields["on"]
                fields["on"] = (on,) if isinstance(on, str) else tuple(on)
            try:
                return cls(**fields)
            except TypeError as exc:
                raise WorkflowError(f"invalid retry options: {exc}") from None
        raise WorkflowError(f"retries must be a number or a mapping, not {type(value).__name__}")


def check_depends(value: str, where: str) -> str:
    if value not in DEPENDS:
        raise WorkflowError(f"{where}: depends must be one of {', '.join(DEPENDS)}, not {value!r}")
    return value


def upstream_ready(depends: str, upstream_states: Sequence[str]) -> bool | None:
    """True: the task may run now; False: it never will (skip it); None: wait. States are TaskState values."""
    finished = all(s in ("succeeded", "failed", "skipped", "cancelled") for s in upstream_states)
    if depends == "all_finished":
        return True if finished else None
    if depends == "any_failed":
        if any(s == "failed" for s in upstream_states):
            return True
        return False if finished else None
    if any(s in ("failed", "skipped", "cancelled") for s in upstream_states):
        return False
    return True if all(s == "succeeded" for s in upstream_states) else None
