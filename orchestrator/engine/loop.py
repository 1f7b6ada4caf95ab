"""③ + ⑧ The engine process: read events and task records, commit their effects, keep the streams healthy.

One step:
    read     XREADGROUP on the events and results streams (batched, blocking)
    plan     events -> matching rules -> run requests; records decoded          (pure)
    commit   WATCH the runs, read them, apply the batch (pure), then MULTI:
             run writes + job dispatches + XACK + metrics, EXEC; retried on a concurrent change
Because the acknowledgement is in the same transaction as the runs and jobs it caused, a crash at any
point either commits all of it or none of it; a redelivered entry finds its run and does nothing twice.
A batch that concerns nobody is acknowledged by one script instead (chronicle.py, `ack_settled`).

Maintenance, after each step (`maintain`), each chore of maintenance.py when its time has come: the sweep of lost
attempts, dead letters and reclaiming, trimming. The engine is their `Host`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from .. import faults, health, tracing
from ..backoff import PASSING, RideOut, classify
from ..catalog import PublishCatalog
from ..errors import EventError
from ..events.chains import event_depth
from ..events.decisions import planned
from ..events.envelope import Event, event_from_mapping
from ..events.stream import Entry, StreamConsumer, default_consumer_name
from ..jsonutil import loads
from ..logsetup import one_write
from ..metrics import SCHEDULE_OVERLAPS, MetricsBatch, counter_field
from ..project import Project
from ..settings import Settings
from ..state import lua, pipeline
from ..state.keys import ENGINE_GROUP, Keys
from ..state.store import RunStore
from ..types import Dispatcher
from ..workflows.advance import Timer
from ..workflows.lifecycle import Guard, Resources, RunRequest
from ..workflows.records import ControlRecord, TaskRecord
from ..workflows.runs import Run
from .batch import Batch, EventDecisions, Outcome, apply_batch
from .cache import RunCache
from .changelog import log_change
from .chronicle import Chronicle, unheard
from .flow import FlowControl
from .maintenance import Maintenance, dead_letter
from .plan import plan_event
from .reload import ProjectBehind, Reloader
from .slots import RenewLeases, SlotBook
from .waits import NO_WAITS, Waits

__all__ = ["Engine"]

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Engine:
    """Runs the engine loop for one project against one Redis."""

    def __init__(self, client: redis.Redis, settings: Settings, project: Project, dispatcher: Dispatcher, *,
                 consumer: str | None = None, clock: Callable[[], datetime] = _utcnow) -> None:
        self._redis = client
        self.redis_failed_at_s = 0.0  # when the loop last met a Redis error (takeover.py)
        self._settings = settings
        self._project = project
        self._dispatcher = dispatcher
        self._clock = clock
        self.keys = Keys(settings.key_prefix)
        self.store = RunStore(client, self.keys, retention_s=settings.run_retention_s)
        self.consumer = StreamConsumer(client, [self.keys.events, self.keys.results], ENGINE_GROUP,
                                       consumer or default_consumer_name("engine"),
                                       batch_size=settings.engine_batch_size, block_s=settings.engine_block_s)
        self._cache = RunCache()
        self._chronicle = Chronicle(client, self.keys, settings, self._cache)
        self._current = {name: wf.spec for name, wf in project.workflows.items()}  # what the workers run
        self._ride = RideOut("engine", log, self.keys)
        self._unfinished: list[Entry] = []
        self._release_guard = lua.register(client, "release_guard")
        self._waits = Waits(client, self.keys, settings, self.store)  # wait steps' events and waiters
        self._slots = SlotBook(client, self.keys, settings, lambda: self._project)  # current limits
        self.maintenance = Maintenance(self)
        self.maintenance.add(RenewLeases(self, {name: spec.concurrency for name, spec in self._current.items()}))
        self.maintenance.add(PublishCatalog(client, self.keys, project, clock))  # what `orch api` shows of it
        self._flow = FlowControl(self, lambda: self._project)  # debounce, batch, throttle, rate_limit (flow/)
        self.reload = Reloader(self, project)  # rules and workflows without a restart, as Redis says (reload.py)
        self.maintenance.add(self.reload)

    # -- what maintenance chores use (maintenance.Host) ---------------------------------------------

    @property
    def client(self) -> redis.Redis:
        return self._redis

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def dispatcher(self) -> Dispatcher:
        return self._dispatcher

    def now(self) -> datetime:
        return self._clock()

    # -- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process until `stop` is set; a Redis outage pauses the loop instead of ending it, and so does one
        at start (a failover, LOADING, NOREPLICAS: the start-up writes are ridden out the same way)."""
        started = False
        while not stop.is_set():
            health.tick("engine", self._settings.engine_block_s)  # liveness: the loop progresses (health.py)
            try:
                if not started:
                    self.consumer.ensure_groups()
                    self.reload.check()  # publishes this engine's rule-set version (the last started wins)
                    started = True
                self.step()
                self.maintain()
                self._ride.ok(self._redis)
            except redis.RedisError as exc:  # away, OOM, READONLY, BUSY, contention...: back off, carry on
                if not started and classify(exc) not in PASSING:
                    raise  # at start, an ACL or a wrong key type is a configuration to fix, not to wait out
                self.redis_failed_at_s = time.time()  # takeover.py waits before judging other engines dead
                stop.wait(self._ride.failed(exc))
            except ProjectBehind:  # cannot load the active rule-set version: hand back its events (reload.py)
                started = True  # its groups exist and its start went out: it steps, as a behind engine
                self.reload.hand_back()
        log.info("engine %s: stopped", self.consumer.consumer)

    def step(self, block: bool = True) -> int:
        """Fire due timers, then read one batch and commit it; returns the number of entries read."""
        due, wait_s = self._due_timers()
        if due:
            self.process([], timers=due)
        entries = self._unfinished or self.consumer.read(block=block and not due, block_s=wait_s)
        if entries:
            faults.hit("engine.after_read")
            self._unfinished = entries  # a Redis error before the commit: these go first next time
            self.process(entries)
            self._unfinished = []
        return len(entries)

    def _due_timers(self) -> tuple[list[Timer], float]:
        """Timers due now, and how long the next read may block before the next one is due."""
        now = self._clock()
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrangebyscore(self.keys.timers, "-inf", int(now.timestamp() * 1000), start=0,
                           num=self._settings.engine_batch_size, withscores=True)
        pipe.zrange(self.keys.timers, 0, 0, withscores=True)
        due, first = pipe.execute()
        timers = [Timer.parse(m.decode(), datetime.fromtimestamp(score / 1000, UTC)) for m, score in due]
        wait_s = self._settings.engine_block_s
        if first:
            wait_s = min(wait_s, max(0.001, first[0][1] / 1000 - now.timestamp()))
        return timers, wait_s

    def process(self, entries: list[Entry], retried: bool = False, timers: list[Timer] | None = None) -> Outcome:
        """Plan and commit `entries` (freshly read, or reclaimed when `retried`) and due `timers`."""
        entries = self.reload.keep(entries)  # while behind, those that need the rules are handed back (reload.py)
        outcome = self.reload.consistently(lambda: self._commit(self._plan(entries, timers), retried), entries)
        with one_write():  # a line or two per run: one write for the batch
            for change in outcome.changes:
                log_change(change)
        return outcome

    # -- plan ----------------------------------------------------------------------------------

    def _plan(self, entries: list[Entry], timers: list[Timer] | None = None) -> Batch:
        batch = Batch(timers=timers or [])
        events: list[tuple[Entry, Event]] = []
        for entry in self._flow.take_releases(batch, entries):
            try:
                if entry.stream == self.keys.events:
                    body = loads(entry.fields[b"e"])
                    batch.bodies.append((entry, body))
                    if unheard(self._project.index, body):
                        batch.settled.append(entry)
                        continue
                    events.append((entry, event_from_mapping(body)))
                elif b"c" in entry.fields:
                    batch.records.append((entry, ControlRecord.from_fields(entry.fields)))
                else:
                    batch.records.append((entry, TaskRecord.from_fields(entry.fields)))
            except (EventError, ValueError, KeyError, TypeError) as exc:
                dead_letter(self, entry, 1, f"undecodable entry: {type(exc).__name__}: {exc}")
        depths = self._chronicle.run_depths([event for _, event in events])
        for entry, event in events:
            self._plan_event(batch, entry, event, event_depth(event, depths))
        batch = self._flow.hold(batch)
        self._waits.plan(batch)  # the look-backs of waiting steps (the events' hits: in the commit)
        return batch

    def _plan_event(self, batch: Batch, entry: Entry, event: Event, depth: int) -> None:
        try:
            def plan() -> tuple[list[RunRequest], Any]:
                return plan_event(self._project, event, entry.fields[b"e"], depth=depth,
                                  max_depth=self._settings.chain_max_depth, sample=self._settings.explain_sample)

            requests, outcomes = tracing.match(event, plan) if tracing.active else plan()
        except Exception as exc:  # noqa: BLE001 - left pending: retried, then dead-lettered with this reason
            log.exception("engine: cannot plan event %s (entry %s)", event.id, entry.id)
            batch.failed[entry] = f"{type(exc).__name__}: {exc}"
            return
        decided = planned(outcomes, requests)
        if decided:
            ref = {"id": event.id, "source": event.source, "type": event.type}
            batch.decisions.append(EventDecisions(entry, ref, depth, decided, outcomes.omitted))
        batch.add_evaluations(event.id, outcomes)
        if requests:
            batch.requests.append((entry, requests))
        else:
            batch.settled.append(entry)

    # -- commit --------------------------------------------------------------------------------

    def _commit(self, batch: Batch, retried: bool) -> Outcome:
        waits = self._waits.reads(batch)  # the waiters of its events' types, read in the first round trip
        if not retried and self._chronicle.ack_settled(batch, self.reload.project.ruleset, waits.by_type):
            return Outcome([], list(batch.settled), {}, MetricsBatch())  # it concerns nobody
        run_ids = batch.run_ids
        guards = batch.guards
        with pipeline.transaction(self._redis) as pipe:  # EXEC packed by hiredis (state/pipeline.py)
            for attempt in range(1, 1000):
                try:
                    # the runs, and the rule-set version events were planned under: one WATCH, one script
                    existing, found = self._read_runs(pipe, run_ids, self.reload.guard_key(batch), waits.commands)
                    if waits.commands:  # the steps its events resume; their runs not read yet, read now
                        self._waits.match(batch, waits, found)
                        waits, read, run_ids = NO_WAITS, set(run_ids), batch.run_ids
                        existing.update(self._read_runs(pipe, [r for r in run_ids if r not in read], None)[0])
                    held = self._read_guards(pipe, guards)
                    pools = self._slots.read(pipe, batch.claims(existing, self._current))
                    now = self._clock()
                    outcome = apply_batch(batch, existing, now, Resources(guards=held, **pools), self._current)
                    pipe.multi()
                    self._queue_writes(pipe, outcome, retried)
                    self._chronicle.queue(pipe, batch, outcome, now)
                    faults.hit("engine.before_commit")
                    pipe.execute()
                except redis.WatchError:
                    self._cache.forget(run_ids)  # the batch mutated them: read them afresh
                    log.debug("engine: runs changed during commit (attempt %d), retrying", attempt)
                    time.sleep(min(0.001 * attempt, 0.05))
                    continue
                except BaseException:
                    self._cache.forget(run_ids)
                    raise
                self._cache.committed(outcome.changes)
                if tracing.active:
                    tracing.runs_ended(outcome.changes)
                return outcome
        raise redis.WatchError("engine: could not commit a batch after 999 attempts (other engines kept "
                               "changing its runs); it is retried")

    def _read_runs(self, pipe: redis.client.Pipeline, run_ids: list[str], version_key: str | None,
                   before: list[tuple[Any, ...]] | None = None) -> tuple[dict[str, Run | Exception], list[Any]]:
        """The batch's runs under WATCH; with `version_key`, also the rule-set version (Replan if replaced);
        the replies of the reads `before`, sent ahead in the same round trip."""
        keys = [self.keys.run(run_id) for run_id in run_ids]
        watched = [*keys, *([version_key] if version_key else [])]
        if not watched:  # reads `before` come with events, and a batch with events watches the rule-set version
            return {}, []
        found, replies = lua.read_watch_and_read(pipe, before or [], watched, "read_runs", watched,
                                                 [len(keys), *self._cache.versions(run_ids)])
        if version_key:
            self.reload.verify(replies[-1] or None)
        return self._cache.resolve(run_ids, replies[:len(keys)]), found

    def _read_guards(self, pipe: redis.client.Pipeline, guards: list[str]) -> dict[str, Guard]:
        if not guards:
            return {}
        keys = [k for g in guards for k in (self.keys.schedule_active(g), self.keys.schedule_queued(g))]
        replies = lua.watch_and_read(pipe, keys, "read_guards", keys, [self.keys.run("")])
        out = {}
        for guard, (holder, meta, queued) in zip(guards, replies, strict=True):
            running = bool(holder) and bool(meta) and loads(meta).get("status") == "running"
            out[guard] = Guard(holder.decode() if running else None, bool(queued))
        return out

    def _queue_writes(self, pipe: redis.client.Pipeline, outcome: Outcome, retried: bool) -> None:
        effects = outcome.effects
        for guard, run_id in effects.take.items():
            pipe.set(self.keys.schedule_active(guard), run_id)
        for guard, raw in effects.queue.items():
            pipe.set(self.keys.schedule_queued(guard), raw, nx=True)
        for change in outcome.changes:
            self.store.write_change(pipe, change)
        dispatches = [d for change in outcome.changes for d in change.dispatches]
        if dispatches:
            self._dispatcher.dispatch(pipe, dispatches)
        self._queue_bookkeeping(pipe, outcome)
        self._waits.queue(pipe, outcome)
        if outcome.ack:
            self.consumer.ack(pipe, outcome.ack)
            if retried:
                pipe.hdel(self.keys.engine_errors, *[e.id for e in outcome.ack])
        for entry, error in outcome.failed.items():
            pipe.hset(self.keys.engine_errors, entry.id, error)
        self._slots.queue(pipe, effects, self._clock())
        for guard, run_id in effects.release:
            self._release_guard(keys=[self.keys.schedule_active(guard), self.keys.schedule_queued(guard),
                                      self.keys.events, self.keys.metric(SCHEDULE_OVERLAPS.name)],
                                args=[run_id, counter_field(guard.split("/", 1)[0], "released")], client=pipe)
        outcome.metrics.flush(pipe, self.keys)

    def _queue_bookkeeping(self, pipe: redis.client.Pipeline, outcome: Outcome) -> None:
        """Timers, the in-flight attempts the sweeper watches, and cancel markers."""
        timers = {t.member: int(t.due.timestamp() * 1000) for c in outcome.changes for t in c.timers}
        if outcome.fired:  # first: a timer set again by the batch that fired it stays set
            pipe.zrem(self.keys.timers, *outcome.fired)
        if timers:
            pipe.zadd(self.keys.timers, timers)
        running = {m: w for c in outcome.changes for m, w in c.running.items()}
        done = [m for c in outcome.changes for m in c.done if m not in running]
        if running:
            pipe.hset(self.keys.inflight, mapping=running)
        if done:
            pipe.hdel(self.keys.inflight, *done)
        for change in outcome.changes:
            if change.cancel_attempts:  # workers stop these attempts (and no later one: a retry's)
                marker = self.keys.cancel(change.run.id)
                pipe.hset(marker, mapping=change.cancel_attempts)
                pipe.expire(marker, int(self._settings.run_retention_s))
            if change.withdrawn:
                self._dispatcher.withdraw(pipe, change.withdrawn)

    # -- maintenance (maintenance.py) -------------------------------------------------------------

    def maintain(self, force: bool = False) -> None:
        """Run the maintenance chores whose time has come (all of them now, when `force`)."""
        self.maintenance.run_due(force)

    def apply_records(self, records: list[TaskRecord]) -> None:
        """Commit records the engine made up itself (a lost attempt's failure) like a worker's; they
        acknowledge no stream entry."""
        batch = Batch(records=[(Entry("", f"{r.run}/{r.node}/{r.attempt}", {}), r) for r in records])
        self.reload.consistently(lambda: self._commit(batch, retried=False))

