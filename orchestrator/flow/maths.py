"""③ The arithmetic of the hold-back controls, pure, times in epoch milliseconds with the clock passed in.

flow_decide.lua does the same sums on the state it keeps in Redis; tests/unit/test_flow_maths.py runs both
on the same sequences and checks they agree.

    throttle    GCRA (virtual scheduling), in whole microseconds. Emission interval T = period / limit (rounded
                down), tolerance tau = (burst - 1) T.
                An event arriving at `now` with theoretical arrival time `tat` starts at max(now, tat - tau);
                the new tat is max(tat, now) + T. So `burst` start at once from idle, then one every T.
                Held events of a key start in arrival order: a start is never before the key's last one,
                and an event finding held events of its key waiting is held too (even when due now).
    rate_limit  sliding window: admitted when fewer than `limit` events were admitted in (now - period, now].
    debounce    due = min(now + period, first + max_wait) (no max_wait: now + period), moved by each event.
    batch       due = first + timeout; released at once when it holds max_size events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Throttled", "batch_due", "debounce_due", "throttle", "window_admits"]


@dataclass(frozen=True)
class Throttled:
    """A throttle decision: when the event starts, the key's new state, and whether it is held (microseconds:
    integer sums, exact in Lua's doubles too)."""

    start_us: int
    tat_us: int
    held: bool

    @property
    def due_ms(self) -> int:
        return -(-self.start_us // 1000)


def throttle(tat_us: int | None, last_us: int | None, pending: int, now_ms: int, *, limit: int, period_ms: int,
             burst: int) -> Throttled:
    """GCRA for one event of a key whose state is (`tat_us`, `last_us` its last start, `pending` held)."""
    now_us = now_ms * 1000
    interval = max(1, period_ms * 1000 // limit)
    tau = (burst - 1) * interval
    tat = now_us if tat_us is None else tat_us
    start = max(now_us, tat - tau, now_us if last_us is None else last_us)
    return Throttled(start, max(tat, now_us) + interval, held=start > now_us or pending > 0)


def window_admits(admitted_ms: Sequence[float], now_ms: float, *, limit: int, period_ms: float) -> bool:
    """Whether an event at `now_ms` is admitted, given the times of the last admitted ones (newest first,
    at most `limit` kept)."""
    if len(admitted_ms) < limit:
        return True
    return admitted_ms[limit - 1] <= now_ms - period_ms


def debounce_due(first_ms: float, now_ms: float, *, period_ms: float, max_wait_ms: float) -> tuple[float, str]:
    """When a debounce hold whose first event came at `first_ms` is due after an event at `now_ms`, and why
    (quiet, or max_wait when that comes first)."""
    quiet = now_ms + period_ms
    if max_wait_ms and first_ms + max_wait_ms <= quiet:
        return first_ms + max_wait_ms, "max_wait"
    return quiet, "quiet"


def batch_due(first_ms: float, *, timeout_ms: float) -> float:
    """When a batch opened at `first_ms` is released if it does not fill first."""
    return first_ms + timeout_ms
