"""⑧ Engine maintenance: small chores, one job each, run between batches by one scheduler.

    chore            how often                        what
    Sweep            every pass                       fail the attempts whose worker died; hand back to
                     + its stall scan every 60 s      their queues the jobs dead workers had taken; with
                                                      the scan, fail the attempts whose job vanished
    PendingEntries   every pass                       dead-letter entries delivered too often, take
                                                      over (takeover.py) the entries of engines whose
                                                      heartbeat is older than engine_dead_after_s, then
                                                      reclaim (XAUTOCLAIM) and process entries left
                                                      pending engine_claim_idle_s by stopped consumers
    EngineBeat       engine_beat_s (5 s)              say this engine is alive (beat.py)
    Trim             every 60 s                       trim the streams below what every group still
                                                      needs, drop expired runs from the indexes, forget
                                                      consumers idle for a day
    PublishCatalog   first pass, then every 60 s      write the project catalogue for `orch api`; then
    (catalog/, added by the engine)                   restore it only if it went missing
    RenewLeases      every pass, at most a third of   renew the slot leases of live runs; a lease that
    (slots.py, added by the engine)  slot_lease_s     ran out frees its slot for the next run in line
    Reloader         every engine_reload_check_s      keep to the active rule-set version: publish this
    (reload.py, added by the engine)                  engine's at start, reload its changed files, switch

A pass comes every `engine_maintenance_interval_s` (`Maintenance.run_due`, called by the engine after each
step; `force` runs every chore now). Every chore's work grows with the work in flight (attempts, running
runs, pending entries, workers, workflows), never with the keyspace: no SCAN or KEYS, and neither dedup
keys nor finished runs are read (they expire on their own; the indexes are trimmed by score).

Chores reach the engine through `Host`, the few things they use of it, as dramatiq's middleware are
handed the broker. A Redis error in a chore goes up to the engine's loop, which rides it out; the chore
runs again at its next turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

import redis

from ..events.stream import Entry, StreamConsumer, safe_trim, settled_below, settled_through
from ..logsetup import about
from ..metrics import EVENTS_DEAD_LETTERED, MetricsBatch
from ..settings import Settings
from ..state.keys import DEAD_LETTER_MAXLEN, ENGINE_GROUP, Keys
from ..state.store import RunStore
from ..types import Dispatcher
from ..workflows.advance import Timer
from ..workflows.records import TaskRecord
from ..workflows.work import attempt_member
from .batch import Outcome
from .beat import EngineBeat
from .sweeper import Suspects, lost_attempts, stalled_attempts
from .takeover import Takeover

__all__ = ["Chore", "Host", "Maintenance", "PendingEntries", "Sweep", "Trim", "dead_letter"]

log = logging.getLogger(__name__)

STALL_SCAN_EVERY_S = 60.0
STALL_SCAN_RUNS = 1000  # running runs looked at per scan, oldest first
TRIM_EVERY_S = 60.0
FORGET_CONSUMERS_IDLE_S = 86400.0


class Host(Protocol):
    """What the chores use of the engine (orchestrator.engine.Engine)."""

    keys: Keys
    store: RunStore
    consumer: StreamConsumer

    @property
    def client(self) -> redis.Redis: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def dispatcher(self) -> Dispatcher: ...

    def now(self) -> datetime: ...

    def apply_records(self, records: list[TaskRecord]) -> None:
        """Commit records the engine made up itself (a lost attempt's failure), like a worker's."""
        ...

    def process(self, entries: list[Entry], retried: bool = False,
                timers: list[Timer] | None = None) -> Outcome: ...


class Chore(Protocol):
    """One maintenance job: how often it is due, and one turn of it."""

    def every_s(self, settings: Settings) -> float: ...

    def run(self, now_s: float, force: bool) -> None:
        """One turn; `now_s` is the scheduler's monotonic clock, `force` says every chore runs now."""
        ...


class Maintenance:
    """Runs each chore, in order, when its interval has passed since its last turn (all, when forced)."""

    def __init__(self, host: Host, chores: Sequence[Chore] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._host = host
        default: list[Chore] = [Sweep(host), PendingEntries(host), EngineBeat(host), Trim(host)]
        self.chores = list(chores) if chores is not None else default
        self._due_s = [0.0] * len(self.chores)
        self._clock = clock

    def add(self, chore: Chore) -> None:
        """One more chore (the engine's own, such as publishing the project catalogue), due at the next pass."""
        self.chores.append(chore)
        self._due_s.append(0.0)

    def run_due(self, force: bool = False) -> None:
        now_s = self._clock()
        for index, chore in enumerate(self.chores):
            if force or now_s >= self._due_s[index]:  # next turn set first: a failed turn waits for it
                self._due_s[index] = now_s + chore.every_s(self._host.settings)
                chore.run(now_s, force)


class Sweep:
    """Fail the attempts that will never report, so that their retry policy decides: those whose worker
    died (each turn) and, with the stall scan, those queued too long whose job vanished; and hand back
    to their queues the jobs dead workers had taken but not started."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._next_scan_s = 0.0
        self.suspects = Suspects()

    def every_s(self, settings: Settings) -> float:
        return settings.engine_maintenance_interval_s

    def run(self, now_s: float, force: bool) -> None:
        scan = force or now_s >= self._next_scan_s
        if scan:
            self._next_scan_s = now_s + STALL_SCAN_EVERY_S
        self.sweep(scan_runs=scan)

    def sweep(self, scan_runs: bool = False) -> int:
        """One sweep (with the stall scan when `scan_runs`); the number of attempts failed."""
        now = self._host.now()
        raw = self._host.client.hgetall(self._host.keys.inflight)
        inflight = {k.decode(): v.decode() for k, v in raw.items()}
        records = self._lost(inflight, now)
        if scan_runs:
            records += self._stalled(inflight, now)
        self._fail(records)
        recovered = self._host.dispatcher.recover()
        if recovered:
            log.warning("engine: %d job(s) taken by dead workers handed back to their queues", len(recovered))
        return len(records)

    def _lost(self, inflight: dict[str, str], now: datetime) -> list[TaskRecord]:
        """In-flight attempts whose worker's heartbeat is gone (one EXISTS per worker, in the transaction
        that reads the results stream's end), failed once every record written before is applied."""
        host = self._host
        if not inflight:
            self.suspects.clear()  # every suspect's result came
            return []
        workers = sorted(set(inflight.values()))
        pipe = host.client.pipeline(transaction=True)  # heartbeats and the stream's end seen at one instant
        for worker in workers:
            pipe.exists(host.keys.worker(worker))
        pipe.xrevrange(host.keys.results, count=1)
        *exists, last = pipe.execute()
        alive = {w for w, found in zip(workers, exists, strict=True) if found}
        horizon = last[0][0].decode() if last else "0-0"
        mono = time.monotonic()
        self.suspects.note(lost_attempts(inflight, alive, now, host.settings.worker_heartbeat_ttl_s), horizon, mono)
        return self.suspects.due(inflight, self._settled(), mono, host.settings.engine_stall_s)

    def _settled(self) -> Callable[[str], bool]:
        """Whether the engines applied every results entry up to an id: asked of Redis once per pass."""
        bound: list[str | None] = []

        def settled(entry_id: str) -> bool:
            if not bound:
                bound.append(settled_below(self._host.client, self._host.keys.results, ENGINE_GROUP))
            return settled_through(bound[0], entry_id)
        return settled

    def _stalled(self, inflight: dict[str, str], now: datetime) -> list[TaskRecord]:
        """Attempts of the oldest running runs queued too long whose job is gone: the runs are read in a
        few pipelined round trips (RunStore.get_many), not one per run."""
        ids = self._host.client.zrange(self._host.keys.runs_by_status("running"), 0, STALL_SCAN_RUNS - 1)
        runs = self._host.store.get_many([i.decode() for i in ids])
        return stalled_attempts(runs, now, self._host.settings.engine_stall_s, inflight,
                                self._host.dispatcher.missing_jobs)

    def _fail(self, records: list[TaskRecord]) -> None:
        for record in records:
            log.warning("engine: run %s task %s attempt %d: %s", record.run, record.node, record.attempt,
                        record.error, extra=about(record.run, record.node, record.attempt))
        if not records:
            return
        self._host.apply_records(records)
        self.suspects.forget(records)
        lost = [attempt_member(r.run, r.node, r.attempt) for r in records if r.error_type == "WorkerLost"]
        if lost:
            self._host.client.hdel(self._host.keys.inflight, *lost)  # also those their runs no longer knew


class PendingEntries:
    """Entries delivered to the engine and never acknowledged: dead-letter those delivered
    `engine_max_deliveries` times, take over at once those of dead engines (takeover.py), then, as the
    fallback, the others idle for `engine_claim_idle_s` (their consumer stopped or is stuck), and
    process them again."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self.takeover = Takeover(host)

    def every_s(self, settings: Settings) -> float:
        return settings.engine_maintenance_interval_s

    def run(self, now_s: float, force: bool) -> None:
        self.dead_letter_over_delivered()
        self.takeover.run()
        self.reclaim()

    def dead_letter_over_delivered(self) -> None:
        host, settings = self._host, self._host.settings
        for stream, entry_id, deliveries in host.consumer.over_delivered(settings.engine_claim_idle_s,
                                                                         settings.engine_max_deliveries):
            reason = host.client.hget(host.keys.engine_errors, entry_id)
            text = reason.decode() if reason else "delivered too many times without being processed"
            dead_letter(host, Entry(stream, entry_id, {}), deliveries, text)
            host.client.hdel(host.keys.engine_errors, entry_id)

    def reclaim(self) -> None:
        claimed = self._host.consumer.claim_idle(self._host.settings.engine_claim_idle_s)
        if claimed:
            log.warning("engine: reclaimed %d entries left pending by a stopped consumer", len(claimed))
            self._host.process(claimed, retried=True)


def dead_letter(host: Host, entry: Entry, deliveries: int, reason: str) -> None:
    """Move `entry` to the dead letters with `reason`, acknowledging it, and count it (also used by the
    engine for an entry it cannot decode)."""
    log.error("engine: entry %s of %s dead-lettered after %d deliveries: %s", entry.id, entry.stream,
              deliveries, reason)
    host.consumer.dead_letter(host.keys.dead_letters, entry.stream, entry.id, deliveries, reason,
                              DEAD_LETTER_MAXLEN)
    metrics = MetricsBatch()
    metrics.inc(EVENTS_DEAD_LETTERED, "events" if entry.stream == host.keys.events else "results")
    pipe = host.client.pipeline(transaction=False)
    metrics.flush(pipe, host.keys)
    pipe.execute()


class Trim:
    """Trim the streams below what every group still needs, drop the runs created before the retention
    window from the indexes (by score, per workflow: RunStore.trim_indexes), forget idle consumers."""

    def __init__(self, host: Host) -> None:
        self._host = host

    def every_s(self, settings: Settings) -> float:
        return TRIM_EVERY_S

    def run(self, now_s: float, force: bool) -> None:
        host, settings = self._host, self._host.settings
        trimmed = safe_trim(host.client, host.keys.events, settings.events_retention_s)
        trimmed += safe_trim(host.client, host.keys.results, settings.results_retention_s)
        host.store.trim_indexes(host.now())
        host.consumer.forget_idle_consumers(FORGET_CONSUMERS_IDLE_S)
        if trimmed:
            log.info("engine: trimmed %d processed stream entries", trimmed)
