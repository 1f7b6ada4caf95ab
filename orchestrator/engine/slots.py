"""③ ⑧ The engine's side of slot pools (workflows/pools.py): read them for a batch, write what it took and
freed in the batch's transaction, and renew the leases of live holders.

    read      under the batch's WATCH, in one round trip (read_slots.lua): each claimed pool's holders (how
              many, and who for a singleton) and, for cancel_previous, the runs in line; a concurrent change
              by another engine retries the batch
    queue     on the batch's MULTI: slots taken (ZADD with a lease), runs put in line, the pool index, cancel
              requests for the runs a singleton replaces, and slot_release.lua for each run that ended
    RenewLeases   a maintenance chore: slot_renew.lua on the pools of the index, every third of the lease,
              one HGETALL of the index, then RENEW_CHUNK pools' scripts per pipelined round trip, at most
              RENEW_MAX_POOLS per pass: a bigger index is covered over several passes, each resuming where
              the last stopped (a live holder keeps its slot meanwhile: only a dead one's lease lapses);
              its first turn adopts the slots an older orch kept per workflow (`<p>:workflow:<name>:running`
              and `:queued`), so runs waiting across an upgrade still start

A slot is leased: the holder's entry carries an expiry; it is renewed while the run lives, so only a run
that vanished (its key gone) or ended without freeing its slot loses it, and the next run in line starts.

How many runs a release or a renewal lets hold slots follows the engine's current project
(`current_limit`) where that is safe: a release (in a batch's commit) lets no more than the smaller of the
limit the run (or the pool index) recorded and the project's, so a lowered limit holds at once (holders above
it run on; no run in line starts until the pool is under it), and an engine that is behind, or has not yet
taken up a new version, never lifts a limit it does not know. A raised limit, or one that is gone (the
rule's `concurrency`/`singleton`, the rule itself, or the workflow's `concurrency` removed), takes effect at
the next renewal by an engine on the active version (it checks the version first): the line then starts as
the new limit allows, or drains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import redis

from ..jsonutil import dumps
from ..metrics import SLOT_EVENTS, MetricsBatch
from ..settings import Settings
from ..state import lua
from ..state.keys import Keys
from ..state.ruleset import active_version
from ..state.slots import index_entry, index_record
from ..workflows.lifecycle import Effects
from ..workflows.pools import Claim, lease_until_ms, workflow_claim

if TYPE_CHECKING:
    from ..project import Project
    from .maintenance import Host

__all__ = ["UNLIMITED", "RenewLeases", "SlotBook", "adopt_legacy", "current_limit"]

log = logging.getLogger(__name__)

UNLIMITED = 1 << 30  # the limit of a pool whose limit is gone: its line drains
RENEW_CHUNK = 200  # pools renewed per round trip
RENEW_MAX_POOLS = 5000  # pools renewed per pass, at most


def current_limit(project: Project | None, kind: str, name: str, recorded: int, *, lift: bool = False) -> int:
    """The limit of a pool of `kind` for `name` (a workflow's or a rule's) in `project`, see the module
    docstring: never above `recorded` unless `lift` (the project is the active version). `recorded` when there
    is no project, or its workflow is gone (its runs cannot be planned)."""
    if project is None:
        return recorded
    if kind == "workflow":
        workflow = project.workflows.get(name)
        limit = recorded if workflow is None else workflow.spec.concurrency or UNLIMITED
    else:
        controls = next((rule.controls for rule in project.rules if rule.name == name), None)
        limit = controls.limit if controls is not None and controls.kind == kind else UNLIMITED
    return limit if lift else min(limit, recorded)


class SlotBook:
    """Reads and writes the slot pools of one engine's batches."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings,
                 project: Callable[[], Project] | None = None) -> None:
        self._keys = keys
        self._lease_s = settings.slot_lease_s
        self._release = lua.register(client, "slot_release")
        self._project = project  # the engine's current project: its limits free the slots (current_limit)

    def read(self, pipe: redis.client.Pipeline, claims: dict[str, Claim]) -> dict[str, Any]:
        """Free slots per pool, and the runs holding and waiting where a claim may need them (WATCHed)."""
        if not claims:
            return {}
        keys = [k for pool in claims for k in (self._keys.slots_held(pool), self._keys.slots_waiting(pool))]
        what = ["all" if c.mode == "cancel_previous" else "holders" if c.kind == "singleton" else "count"
                for c in claims.values()]
        # who holds a slot decides every claim; who waits, only cancel_previous (it cancels them)
        watched = [*keys[0::2], *[k for k, w in zip(keys[1::2], what, strict=True) if w == "all"]]
        replies = lua.watch_and_read(pipe, watched, "read_slots", keys, what)
        free, holders, waiters = {}, {}, {}
        for (pool, claim), (count, held, waiting) in zip(claims.items(), replies, strict=True):
            free[pool] = claim.limit - int(count)
            holders[pool] = [m.decode() for m in held]
            waiters[pool] = [m.decode() for m in waiting]
        return {"free": free, "holders": holders, "waiters": waiters}

    def queue(self, pipe: redis.client.Pipeline, effects: Effects, now: datetime) -> None:
        """Queue on the batch's MULTI the slots taken, the runs put in line, the replaced runs' cancel
        requests and the release of the slots of runs that ended."""
        keys, until = self._keys, lease_until_ms(now, self._lease_s)
        metrics = MetricsBatch()
        for claim, run_id in effects.occupy:
            pipe.zadd(keys.slots_held(claim.pool), {run_id: until})
            pipe.hset(keys.slots, claim.pool, index_record(claim))
        for claim, run_id, score in effects.wait:
            pipe.zadd(keys.slots_waiting(claim.pool), {run_id: score})
            pipe.hset(keys.slots, claim.pool, index_record(claim))
            metrics.inc(SLOT_EVENTS, claim.kind, claim.name, "waited")
        for kind, name, action in effects.pool_events:
            metrics.inc(SLOT_EVENTS, kind, name, action)
        for run_id, by in effects.cancel.items():
            body = {"action": "cancel", "run": run_id, "at_s": now.timestamp(), "by": by}
            pipe.xadd(keys.results, {"c": dumps(body)})
        project = self._project() if self._project is not None and effects.vacate else None
        for claim, run_id in effects.vacate:
            limit = current_limit(project, claim.kind, claim.name, claim.limit)
            self._release(keys=[keys.slots_held(claim.pool), keys.slots_waiting(claim.pool), keys.results, keys.slots],
                          args=[run_id, claim.pool, limit, keys.run(""), now.timestamp(), until], client=pipe)
        metrics.flush(pipe, keys)


def adopt_legacy(client: redis.Redis, keys: Keys, limits: Mapping[str, int], now: datetime, lease_s: float) -> int:
    """Move the slots an older orch kept per limited workflow (a set of holders, a zset of queued runs by
    creation ms) into the workflow's pool, in one transaction per workflow; the number of runs moved."""
    moved = 0
    for name, limit in limits.items():
        claim = workflow_claim(name, limit)
        running, queued = f"{keys.prefix}:workflow:{name}:running", f"{keys.prefix}:workflow:{name}:queued"
        if claim is None or not client.exists(running, queued):
            continue
        with client.pipeline(transaction=True) as pipe:
            pipe.watch(running, queued)
            holders = pipe.smembers(running)
            waiting = pipe.zrange(queued, 0, -1, withscores=True)
            pipe.multi()
            if holders:
                pipe.zadd(keys.slots_held(claim.pool), {m: lease_until_ms(now, lease_s) for m in holders})
            if waiting:
                pipe.zadd(keys.slots_waiting(claim.pool), dict(waiting))
            pipe.hset(keys.slots, claim.pool, index_record(claim))
            pipe.delete(running, queued)
            pipe.execute()  # a WatchError (an old engine still at work) goes up: tried again next turn
        moved += len(holders) + len(waiting)
        log.info("slots: adopted %d holder(s) and %d queued run(s) of workflow %s from the keys of an older orch",
                 len(holders), len(waiting), name)
    return moved


class _Reloader(Protocol):
    @property
    def project(self) -> Project: ...


class RenewLeases:
    """Renew the leases of every pool's live holders; free the slots whose lease ran out (slot_renew.lua)."""

    def __init__(self, host: Host, limits: Mapping[str, int | None] | None = None,
                 max_pools: int = RENEW_MAX_POOLS) -> None:
        self._host = host
        self._renew = lua.register(host.client, "slot_renew")
        self._legacy = {name: limit for name, limit in (limits or {}).items() if limit is not None}
        self._max_pools = max_pools
        self._offset = 0  # where the next pass resumes in the index (pools in name order)

    def every_s(self, settings: Settings) -> float:
        return min(settings.engine_maintenance_interval_s, settings.slot_lease_s / 3)

    def run(self, now_s: float, force: bool) -> None:
        if self._legacy:
            adopt_legacy(self._host.client, self._host.keys, self._legacy, self._host.now(),
                         self._host.settings.slot_lease_s)
            self._legacy = {}
        self.renew()

    def renew(self) -> dict[str, int]:
        """One pass over (at most max_pools of) the pool index; the totals of leases renewed, expired and runs
        started."""
        host, keys = self._host, self._host.keys
        now = host.now()
        times = [int(now.timestamp() * 1000), now.timestamp(), lease_until_ms(now, host.settings.slot_lease_s)]
        reloader: _Reloader | None = getattr(host, "reload", None)  # the Engine's (reload.py): its current project
        project = reloader.project if reloader is not None else None
        lift = project is not None and active_version(host.client, keys) == project.ruleset  # see current_limit
        totals = {"renewed": 0, "expired": 0, "started": 0}
        metrics = MetricsBatch()
        index = sorted(host.client.hgetall(keys.slots).items())
        if self._offset >= len(index):
            self._offset = 0
        turn = index[self._offset:self._offset + self._max_pools]
        self._offset += len(turn)
        pools = [(pool.decode(), entry) for pool, raw in turn if (entry := index_entry(raw)) is not None]
        for start in range(0, len(pools), RENEW_CHUNK):
            for entry, (renewed, expired, started) in self._renew_page(pools[start:start + RENEW_CHUNK], project,
                                                                       lift, times):
                totals["renewed"] += renewed
                totals["expired"] += expired
                totals["started"] += started
                if expired:
                    metrics.inc(SLOT_EVENTS, entry["kind"], entry["name"], "expired", n=expired)
                    log.warning("slots: %d lease(s) of %s %s (key %r) ran out (their run vanished); %d waiting "
                                "run(s) started", expired, entry["kind"], entry["name"], entry["key"], started)
        if metrics:
            pipe = host.client.pipeline(transaction=False)
            metrics.flush(pipe, keys)
            pipe.execute()
        return totals

    def _renew_page(self, pools: list[tuple[str, dict[str, Any]]], project: Project | None, lift: bool,
                    times: list[Any]) -> list[tuple[dict[str, Any], Any]]:
        """slot_renew.lua on `pools`, in one pipelined round trip: each pool's entry with its reply."""
        if not pools:
            return []
        keys = self._host.keys
        pipe = self._host.client.pipeline(transaction=False)
        for name, entry in pools:
            limit = current_limit(project, entry["kind"], entry["name"], entry["limit"], lift=lift)
            self._renew(keys=[keys.slots_held(name), keys.slots_waiting(name), keys.results, keys.slots],
                        args=[name, limit, keys.run(""), *times], client=pipe)
        return [(entry, reply) for (_, entry), reply in zip(pools, pipe.execute(), strict=True)]
