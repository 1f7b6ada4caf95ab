"""③ ⑧ Chain depth: how many runs stand between an event and the outside world that began its chain.

An event from an application, HTTP, the CLI or a trigger has depth 0. A run takes the depth of the event
that started it; what the run causes is one step deeper:

    its lifecycle events (orch.run.*, orch.task.failed)   carry `orchdepth` = run depth + 1
    events its tasks emit (they carry `orchrun`)          depth = the emitting run's depth + 1

So a rule that starts its own workflow again on `orch.run.succeeded` builds a chain 0, 1, 2, ... The engine
starts no run for an event deeper than `ORCH_CHAIN_MAX_DEPTH` (default 10): it records a failed run whose
error says "chain depth N over limit M", counts `orch_chains_cut_total{rule}`, and that record announces
nothing, so a rule on `orch.run.failed` cannot loop on the cuts either.

The depth is a guard against accidents, not a security boundary: anyone who may publish events can set
`orchdepth` (a value that is not a whole number from 0 to 2^31-1 is ignored).
"""

from __future__ import annotations

from collections.abc import Mapping

from .causation import RUN_ATTRIBUTE
from .envelope import INT32_MAX, Event

__all__ = ["DEPTH_ATTRIBUTE", "declared_depth", "event_depth", "over_limit", "run_of"]

DEPTH_ATTRIBUTE = "orchdepth"


def declared_depth(event: Event) -> int | None:
    """The depth `event` carries in `orchdepth`, or None when it carries none or one that is not valid."""
    value = event.extensions.get(DEPTH_ATTRIBUTE)
    if isinstance(value, str) and value.isdigit() and len(value) <= 10:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT32_MAX:
        return None
    return value


def run_of(event: Event) -> str | None:
    """The run whose task emitted `event` (its `orchrun`), when its depth must come from that run."""
    if declared_depth(event) is not None:
        return None
    run = event.extensions.get(RUN_ATTRIBUTE)
    return run if isinstance(run, str) and run else None


def event_depth(event: Event, run_depths: Mapping[str, int]) -> int:
    """The depth of `event`: the one it declares, else one more than the run that emitted it (looked up in
    `run_depths`; a run that is unknown or gone counts as depth 0), else 0."""
    declared = declared_depth(event)
    if declared is not None:
        return declared
    run = run_of(event)
    if run is None:
        return 0
    return min(run_depths.get(run, 0) + 1, INT32_MAX)


def over_limit(depth: int, limit: int) -> str | None:
    """Why an event at `depth` may start no run, or None when it may."""
    return f"chain depth {depth} over limit {limit}" if depth > limit else None
