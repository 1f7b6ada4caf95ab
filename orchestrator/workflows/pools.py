"""④ Slot pools: who may run now, who waits, in which order, and for how long a slot is held. Pure.

A *pool* is a set of slots that runs hold while they run (`limit` of them) and a line of runs waiting
for one. Every limit on runs at once is a pool:

    kind        pool id                       limit                      from
    workflow    workflow/<workflow>           the workflow's concurrency @workflow(concurrency=N) / YAML
    rule        rule/<rule>/<key digest>      concurrency.limit          a rule's `concurrency: {key, limit}`
    singleton   singleton/<rule>/<key digest> 1                          a rule's `singleton: {key, mode}`

A run claims at most one pool (a rule with `concurrency` or `singleton` may not start a workflow that has
its own limit: `orch validate` says so). What happens when the pool is full is the claim's `mode`:

    wait              the run is created `queued` and waits in the pool's line (concurrency, workflow limits)
    skip              no run: the event is dropped, with a record (singleton skip)
    cancel_previous   the runs holding or waiting for the slot are cancelled and the new run waits for it
                      (singleton cancel_previous): the slot passes to it when the cancelled holder has ended

The line is ordered by `wait_score`: arrival time (the event's stream entry) minus the priority in
seconds, as Inngest orders a function's queue: a run with priority 60 goes ahead of runs of priority 0
that arrived up to 60 s before it; equal priorities start in arrival order. Priorities are whole seconds
clamped to [PRIORITY_MIN_S, PRIORITY_MAX_S].

Slots are *leased*: a holder's entry carries an expiry (`lease_until_ms`); the engine renews the leases of
holders whose run is alive (engine/slots.py `RenewLeases`), and a lease that ran out (its run vanished)
frees the slot for the next in line.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from ..jsonutil import dumps

__all__ = ["KEY_SHOWN_CHARS", "MODES", "PRIORITY_MAX_S", "PRIORITY_MIN_S", "Claim", "clamp_priority", "key_text",
           "lease_expired", "lease_until_ms", "pool_id", "wait_score", "workflow_claim"]

PRIORITY_MIN_S = -600
PRIORITY_MAX_S = 600
MODES = ("wait", "skip", "cancel_previous")
KEY_SHOWN_CHARS = 200  # a key value is kept (shown by `orch slots`) up to this length
_SEQ_SLOTS = 1000  # entries of one millisecond told apart in a score


@dataclass(frozen=True)
class Claim:
    """What a run asks of a pool: which pool, its limit, what to do when it is full, its place in line."""

    pool: str
    limit: int
    kind: str  # workflow | rule | singleton
    name: str  # the workflow's or the rule's
    key: str = ""  # the key's value as text (empty: one pool for the whole rule)
    priority: int = 0
    mode: str = "wait"

    def record(self) -> dict[str, Any]:
        """As kept in the run's meta (a retry waits in the same pool) and in the pool index."""
        return asdict(self)

    @classmethod
    def from_record(cls, value: Any) -> Claim | None:
        """A claim read back from Redis (untrusted): None when it is not one."""
        if not isinstance(value, dict):
            return None
        pool, limit, kind, name = value.get("pool"), value.get("limit"), value.get("kind"), value.get("name")
        key, priority, mode = value.get("key", ""), value.get("priority", 0), value.get("mode", "wait")
        if not (isinstance(pool, str) and isinstance(kind, str) and isinstance(name, str) and isinstance(key, str)):
            return None
        if not isinstance(limit, int) or not _whole(limit) or limit < 1 or not _whole(priority) or mode not in MODES:
            return None
        return cls(pool, limit, kind, name, key, clamp_priority(priority), mode)

    @property
    def shown(self) -> dict[str, Any]:
        """What a decision record's `detail` says of the claim."""
        out: dict[str, Any] = {"key": self.key, "limit": self.limit}
        if self.priority:
            out["priority"] = self.priority
        return out


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def workflow_claim(name: str, limit: int | None) -> Claim | None:
    """The claim of a run of a workflow with a concurrency limit (None: no limit)."""
    return None if limit is None else Claim(f"workflow/{name}", limit, "workflow", name)


def key_text(value: Any) -> str:
    """A key's value as text: a string as is, anything else as compact JSON (`42`, `true`, `null`)."""
    return value if isinstance(value, str) else dumps(value).decode()


def pool_id(kind: str, rule: str, key: str) -> str:
    """The id of `rule`'s pool for `key`: the key is hashed, so any value makes a short, safe id."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
    return f"{kind}/{rule}/{digest}"


def clamp_priority(value: Any) -> int:
    """A priority as whole seconds within the bounds; ValueError for a value that is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"a priority must be a number of seconds, not {value!r}")
    return max(PRIORITY_MIN_S, min(PRIORITY_MAX_S, int(value)))


def wait_score(arrival_ms: int, seq: int, priority_s: int) -> float:
    """A waiting run's place in line (lower starts first): its arrival moved `priority_s` seconds earlier,
    then the entry's sequence within its millisecond, so equal priorities keep arrival order."""
    return float(arrival_ms - priority_s * 1000) + min(max(seq, 0), _SEQ_SLOTS - 1) / _SEQ_SLOTS


def lease_until_ms(now: datetime, lease_s: float) -> int:
    """When a lease taken or renewed at `now` runs out, epoch ms."""
    return int(now.timestamp() * 1000 + lease_s * 1000)


def lease_expired(until_ms: float, now: datetime) -> bool:
    """Whether a lease held until `until_ms` has run out at `now`."""
    return until_ms <= now.timestamp() * 1000
