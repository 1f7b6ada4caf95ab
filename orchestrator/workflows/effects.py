"""④ What a batch's lifecycle steps take and free (`Effects`), and the slots and guards they take them from
(`Resources`, read and WATCHed by the engine before the batch is applied). Pure.

Slots come from pools (pools.py): a claim takes a free slot, or waits in the pool's line with its place
(`wait_score`); a singleton's cancel_previous claim cancels the runs holding and waiting first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .pools import Claim, wait_score

__all__ = ["Effects", "Guard", "Resources"]


@dataclass(frozen=True)
class Guard:
    """A schedule's overlap guard as read before the batch: the running run holding it, a held event."""

    holder: str | None = None
    queued: bool = False


@dataclass
class Resources:
    """Free slots per pool (pools.py) and overlap guards, as read (WATCHed) for a batch; the runs holding
    and waiting in the pools a claim may cancel (singleton cancel_previous), as read and as taken since."""

    free: dict[str, int] = field(default_factory=dict)
    guards: dict[str, Guard] = field(default_factory=dict)
    holders: dict[str, list[str]] = field(default_factory=dict)
    waiters: dict[str, list[str]] = field(default_factory=dict)

    def full(self, claim: Claim | None) -> bool:
        return claim is not None and self.free.get(claim.pool, 0) <= 0

    def take_slot(self, claim: Claim | None, run_id: str, arrival: tuple[int, int], effects: Effects) -> bool:
        """Take a slot of `claim`'s pool for `run_id` (True), or put it in the pool's line (False), `arrival`
        (epoch ms, sequence) and the claim's priority giving its place; cancel_previous cancels the runs
        holding and waiting first. A full pool of a `skip` claim is the caller's (`create`) to decline."""
        if claim is None:
            return True
        if not self.full(claim):
            self.free[claim.pool] = self.free.get(claim.pool, 0) - 1
            self.holders.setdefault(claim.pool, []).append(run_id)
            effects.occupy.append((claim, run_id))
            return True
        if claim.mode == "cancel_previous":
            previous = [r for r in (*self.holders.get(claim.pool, []), *self.waiters.get(claim.pool, []))
                        if r not in effects.cancel]
            effects.cancel.update({r: f"singleton {claim.name}" for r in previous})
            effects.pool_events.append((claim.kind, claim.name, "replaced"))
            effects.slotted[run_id] = ("replaced", f"singleton {claim.name}, key {claim.key!r}: run(s) "
                                       f"{', '.join(previous) or 'none'} cancelled; this run starts when the slot frees",
                                       {**claim.shown, "cancelled": previous})
        self.waiters.setdefault(claim.pool, []).append(run_id)
        effects.wait.append((claim, run_id, wait_score(arrival[0], arrival[1], claim.priority)))
        return False


@dataclass
class Effects:
    """What the steps of a batch take and free, for the engine to commit with the runs."""

    take: dict[str, str] = field(default_factory=dict)  # guard -> the run that now holds it
    queue: dict[str, bytes] = field(default_factory=dict)  # guard -> the event held by queue-one
    release: list[tuple[str, str]] = field(default_factory=list)  # (guard, run) of guarded runs that ended
    occupy: list[tuple[Claim, str]] = field(default_factory=list)  # (pool, run) taking a slot
    wait: list[tuple[Claim, str, float]] = field(default_factory=list)  # (pool, run, place in line) queued
    vacate: list[tuple[Claim, str]] = field(default_factory=list)  # (pool, run) of runs with a pool that ended
    cancel: dict[str, str] = field(default_factory=dict)  # run -> by: runs a singleton's new run replaces
    pool_events: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, name, skipped/replaced)
    overlaps: list[tuple[str, str]] = field(default_factory=list)  # (schedule, action: skipped/queued)
    declined: dict[str, tuple[str, str]] = field(default_factory=dict)  # run id -> (skipped/held, why): not created
    slotted: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)  # run id -> (waiting,
    # singleton_skipped or replaced, why, detail): what a rule's pool did to the run, for its decision record
