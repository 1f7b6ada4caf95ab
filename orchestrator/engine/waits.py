"""⑧ The engine's side of wait steps (workflows/waiting.py): the events that resume them, and their waiters.

A step that starts waiting for an event has a waiter: a field of `<p>:waits:<event type>` holding what
it matches with (pattern, correlation, the run's params and the results its correlation reads). It is written, and removed when the
step stops waiting (matched, timed out, cancelled), in the same MULTI as the run (`queue`).

What resumes a step:
    events    for each event type among the batch's events, one HGETALL of its waiters (`reads`), sent in
              the commit's first round trip ahead of the WATCH and read of its runs (a type nobody waits
              for costs the read of a missing key); decoded once and indexed by their correlation's value
              (waitindex.py), each waiter whose pattern and correlation match the event gets a `WaitHit`
              (`match`), and a hit's run the batch had not read is read next, under the same WATCH. One
              event may resume several steps, of several runs: every one that matches.
    look-back a step's look-back timer (`plan`, before the commit), due as soon as it starts waiting: the
              events stream is read newest first, back to `wait_lookback_s` before the step started
              waiting, for at most `wait_lookback_max_entries` entries; the earliest match read is the hit
              (lookback.py, one scan for every look-back of the batch).
Hits are applied by `apply_batch` to the runs read under WATCH, so a hit for a step that no longer waits
(resolved by another event, timed out) changes nothing; they commit with the XACK of the batch.

Why the look-back is a timer, fired after the waiter is written: an event added to the stream after the
waiter was written is read, and planned, after it, so planning finds the waiter; an event added before is
in the stream when the look-back reads it. Either way it is found, and a crash in between loses nothing:
the timer stays in its zset until a commit fires it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from ..events.envelope import Event
from ..jsonutil import dumps
from ..logsetup import about
from ..rules.match import event_view
from ..settings import Settings
from ..state.keys import Keys
from ..state.store import RunStore
from ..workflows.advance import Timer
from ..workflows.runs import TaskState
from ..workflows.waiting import LOOKBACK, WAIT_KIND, Waiter, WaitHit, waiter_of
from . import lookback
from .batch import Batch, Outcome
from .lookback import event_of, hit_of
from .waitindex import Candidates, WaiterCache

__all__ = ["NO_WAITS", "EventWaits", "Waits"]

log = logging.getLogger(__name__)

_SEEN_MAX = 10_000  # correlation errors remembered (so each is shown once); forgotten all at once past it


@dataclass(frozen=True)
class EventWaits:
    """The batch's events by type, and the reads of their types' waiters."""

    by_type: dict[str, list[tuple[str, dict[str, Any]]]]
    commands: list[tuple[Any, ...]]


NO_WAITS = EventWaits({}, [])


class Waits:
    """Finds the events that resume waiting steps, and keeps the waiters in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings, store: RunStore) -> None:
        self._redis, self._keys, self._settings, self._store = client, keys, settings, store
        self._seen: set[tuple[str, str]] = set()  # (waiter, correlation error) shown already
        self._cache = WaiterCache()  # the waiters read, decoded and indexed (waitindex.py)

    def plan(self, batch: Batch) -> None:
        """Add to `batch` the hits of its due look-back timers (its events' come in the commit: `reads`, `match`)."""
        waiters = [w for w in map(self._lookback_waiter, batch.timers) if w is not None]
        try:
            batch.hits += lookback.scan(self._redis, self._keys.events, waiters,
                                        int(self._settings.wait_lookback_s * 1000),
                                        self._settings.wait_lookback_max_entries, self._errors(batch))
        except redis.RedisError:
            raise
        except Exception:  # noqa: BLE001 - a broken look-back must not stop the engine
            log.exception("the look-back of steps %s failed", ", ".join(f"{w.run}/{w.node}" for w in waiters))

    def queue(self, pipe: Any, outcome: Outcome) -> None:
        """Write the waiters of steps that started waiting, remove those of steps that stopped."""
        for change in outcome.changes:
            run = change.run
            for name in change.tasks:
                task = run.tasks[name]
                node = run.spec.node(task.parent or name)
                if node.kind != WAIT_KIND or not (node.wait or {}).get("event"):
                    continue
                key = self._keys.waits(node.wait["event"])  # type: ignore[index]
                waiter = waiter_of(run, task)
                if waiter is None:
                    continue
                if task.state is TaskState.WAITING:
                    pipe.hset(key, waiter.member, dumps(waiter.to_dict()))
                else:
                    pipe.hdel(key, waiter.member)

    # -- events of the batch -------------------------------------------------------------------------

    def reads(self, batch: Batch) -> EventWaits:
        """What to read for the batch's events: the waiters of each of their types, one HGETALL per type, sent
        in the commit's first round trip, with the runs' read (a type nobody waits for reads a missing key)."""
        by_type: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for entry, body in batch.bodies:
            if isinstance(body, dict) and isinstance(body.get("type"), str):
                by_type.setdefault(body["type"], []).append((entry.id, body))
        types = sorted(by_type)
        return EventWaits(by_type, [("HGETALL", self._keys.waits(t)) for t in types])

    def match(self, batch: Batch, read: EventWaits, replies: list[Any]) -> None:
        """Add to `batch` the hits of its events, from the waiters `read` found (`replies`)."""
        for event_type, fields in zip(sorted(read.by_type), replies, strict=True):
            waiters = self._cache.candidates(event_type, fields)
            for entry_id, body in read.by_type[event_type] if waiters.count else ():
                try:
                    batch.hits += _hits(waiters, body, entry_id, self._errors(batch))
                except Exception:  # noqa: BLE001 - one event that breaks matching must not stop the engine
                    log.exception("event at %s: cannot match it with the steps waiting for %s", entry_id, event_type)

    def _errors(self, batch: Batch) -> lookback.Errors:
        """What to do when a waiter's correlation cannot be evaluated for an event: the first time (for that
        waiter and that message, in this engine) a warning, and the message shown on the step (its `error`,
        in `orch runs show` and the UI): a correlation that always fails is seen, not silent."""
        def note(waiter: Waiter, event: Event, why: str) -> None:
            if (waiter.member, why) in self._seen:
                return
            if len(self._seen) >= _SEEN_MAX:
                self._seen.clear()
            self._seen.add((waiter.member, why))
            log.warning("run %s: wait step %s cannot match event %s (%s): %s", waiter.run, waiter.node, event.id,
                        event.type, why, extra=about(waiter.run, waiter.node, waiter.attempt))
            batch.wait_errors.append((waiter.run, waiter.node, waiter.attempt, f"{why} (event {event.id})"))
        return note

    # -- look-back -----------------------------------------------------------------------------------

    def _lookback_waiter(self, timer: Timer) -> Waiter | None:
        """The waiter of the step whose look-back `timer` is due, if it still waits (that attempt)."""
        if not timer.node.endswith(LOOKBACK):
            return None
        try:
            run = self._store.get(timer.run_id)
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("run %s cannot be read (%s); its wait's look-back is skipped", timer.run_id, exc)
            return None
        task = run.tasks.get(timer.node.removesuffix(LOOKBACK)) if run is not None else None
        if run is None or task is None or task.state is not TaskState.WAITING or task.attempt != timer.attempt:
            return None
        return waiter_of(run, task)


def _hits(waiters: Candidates, body: dict[str, Any], entry_id: str, errors: lookback.Errors) -> list[WaitHit]:
    event = event_of(body)
    if event is None:
        return []
    view = event_view(event)
    hits = []
    for waiter in waiters.for_event(view):
        outcome = waiter.test(event, view)
        if outcome is True:
            hits.append(hit_of(waiter, event, view, entry_id))
        elif isinstance(outcome, str):
            errors(waiter, event, outcome)
    return hits

