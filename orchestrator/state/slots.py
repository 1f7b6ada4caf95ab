"""Slot pools as stored (workflows/pools.py): the pool index's entries, and what `orch slots`, GET /slots and
the metrics read of them.

    index_record(claim) -> bytes            the pool as `<p>:slots` keeps it (kind, name, key, limit, mode)
    index_entry(raw) -> dict | None         an entry read back (untrusted), checked
    read_pools(client, keys, rule=) -> [...]   each pool in use: its holders with their lease, its line
    per_name(pools) -> [...]                per rule (or workflow): keys in use, slots held, runs waiting

Reads grow with the pools in use (at most MAX_POOLS per call), never with the keyspace.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis

from ..jsonutil import dumps, loads
from ..workflows.pools import Claim
from .keys import Keys

__all__ = ["HOLDERS_SHOWN", "MAX_POOLS", "WAITING_SHOWN", "index_entry", "index_record", "per_name", "read_pools"]

MAX_POOLS = 5000
WAITING_SHOWN = 20
HOLDERS_SHOWN = 100


def index_record(claim: Claim) -> bytes:
    """The pool as the index keeps it (what `orch slots` and the metrics show): not a run's priority."""
    return dumps({"kind": claim.kind, "name": claim.name, "key": claim.key, "limit": claim.limit,
                  "mode": claim.mode})


def index_entry(raw: bytes | None) -> dict[str, Any] | None:
    """A pool index entry read back from Redis (untrusted): None when it is not one."""
    try:
        value = loads(raw) if raw is not None else None
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not isinstance(value.get("kind"), str):
        return None
    limit = value.get("limit")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        return None
    return {"kind": value["kind"], "name": value["name"], "key": str(value.get("key", "")), "limit": limit,
            "mode": str(value.get("mode", "wait"))}


def _iso_ms(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def read_pools(client: redis.Redis, keys: Keys, *, rule: str | None = None, limit: int = MAX_POOLS,
               detail: bool = True) -> list[dict[str, Any]]:
    """The pools in use (of `rule`, a rule or workflow name, if given): how many hold a slot and how many
    wait; with `detail`, who holds a slot until when (the first HOLDERS_SHOWN) and the first WAITING_SHOWN
    in line. Sorted by kind, name and key."""
    entries: list[tuple[str, dict[str, Any]]] = []
    for pool, raw in client.hgetall(keys.slots).items():
        entry = index_entry(raw)
        if entry is not None and (rule is None or entry["name"] == rule):
            entries.append((pool.decode(), entry))
            if len(entries) >= limit:
                break
    pipe = client.pipeline(transaction=False)
    for pool, _ in entries:
        pipe.zcard(keys.slots_held(pool))
        pipe.zcard(keys.slots_waiting(pool))
        if detail:
            pipe.zrange(keys.slots_held(pool), 0, HOLDERS_SHOWN - 1, withscores=True)
            pipe.zrange(keys.slots_waiting(pool), 0, WAITING_SHOWN - 1)
    replies = pipe.execute() if entries else []
    width = 4 if detail else 2
    out = []
    for index, (pool, entry) in enumerate(entries):
        held, waiting, *shown = replies[width * index: width * index + width]
        row = {"pool": pool, **entry, "held": int(held), "waiting": int(waiting)}
        if detail:
            row["holders"] = [{"run": m.decode(), "lease_until": _iso_ms(score)} for m, score in shown[0]]
            row["next"] = [m.decode() for m in shown[1]]
        out.append(row)
    return sorted(out, key=lambda p: (p["kind"], p["name"], p["key"]))


def per_name(pools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pools summed per (kind, name): keys in use, slots held, runs waiting, the limit per key."""
    sums: dict[tuple[str, str], dict[str, Any]] = {}
    for pool in pools:
        row = sums.setdefault((pool["kind"], pool["name"]), {"kind": pool["kind"], "name": pool["name"], "keys": 0,
                                                             "held": 0, "waiting": 0, "limit": pool["limit"]})
        row["keys"] += 1
        row["held"] += pool["held"]
        row["waiting"] += pool["waiting"]
    return [sums[k] for k in sorted(sums)]
