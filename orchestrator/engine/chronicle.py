"""③ ⑧ What the engine tells about its work, written in the transaction that does the work:

    announcements   the lifecycle events of the batch's runs (workflows/announce.py), published into the
                    events stream with the publishers' own script (dedup on source and id + XADD), queued
                    on the MULTI: no round trip of their own, and never without the run change they announce
    decisions       per event, the rules it matched with their runs and why other candidates did not
                    (events/decisions.py), one SET with the events' retention; the memos of the flow-control
                    decisions they record (flow/decide.py) are kept `memo_keep_s` more, not deleted: an
                    engine that processes the entries again (a lost EXEC reply, a reclaim race) gets the
                    same answers
    chain depths    before planning: the depth of each event (events/chains.py); an event a task emitted
                    takes its run's depth + 1, from the engine's cache or, for runs it does not hold, one
                    pipelined read of their meta

An announcement no rule listens to (`unheard`) is acknowledged as read, without being validated into an
Event: the engine reads back every announcement it makes, and most concern nobody. A batch of nothing
else (or of events no rule is a candidate for) is acknowledged by one script call (`ack_settled`), not the
whole commit: at idle the engine reads its own `orch.run.started` just as a worker picks the run's task up,
and the two share the CPUs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import redis

from ..events import decisions
from ..events.chains import run_of
from ..events.envelope import Event
from ..events.publish import Planner
from ..events.sources import RUNS
from ..flow.decide import memo_keep_s
from ..jsonutil import loads
from ..rules.match import RuleIndex
from ..settings import Settings
from ..state import lua
from ..state.keys import ENGINE_GROUP, Keys
from ..workflows import announce
from ..workflows.runs import RunStatus
from .batch import Batch, Outcome
from .cache import RunCache

__all__ = ["Chronicle", "unheard"]

log = logging.getLogger(__name__)


class Chronicle:
    """Announcements, decision records and chain depths for one engine."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings, cache: RunCache) -> None:
        self._redis = client
        self._keys = keys
        self._cache = cache
        self._announce = settings.lifecycle_events
        self._retention_s = max(1, int(settings.events_retention_s))  # a record expires with its event
        self._memo_keep_s = memo_keep_s(settings)
        self._planner = Planner(keys, dedup_window_s=settings.event_dedup_window_s, max_bytes=announce.MAX_BYTES,
                                trigger="engine")
        self._ack_settled = lua.register(client, "ack_settled")

    # -- before planning -------------------------------------------------------------------------------------

    def run_depths(self, events: Sequence[Event]) -> dict[str, int]:
        """The chain depth of each run that emitted one of `events` without declaring a depth."""
        wanted = {run for event in events if (run := run_of(event))}
        depths: dict[str, int] = {}
        missing = []
        for run_id in sorted(wanted):
            cached = self._cache.peek(run_id)
            if cached is not None:
                depths[run_id] = cached.depth
            else:
                missing.append(run_id)
        if missing:
            pipe = self._redis.pipeline(transaction=False)
            for run_id in missing:
                pipe.hget(self._keys.run(run_id), "meta")
            for run_id, meta in zip(missing, pipe.execute(), strict=True):
                depths[run_id] = _depth_of(meta)
        return depths

    def ack_settled(self, batch: Batch, version: str, types: Iterable[str]) -> bool:
        """Acknowledge a batch that concerns nobody (`Batch.only_settled`, all of the events stream) in one
        script call, as its commit would: unless the rule-set version is no longer `version` (the one it was
        planned under) or a step waits for one of its event `types`. False: nothing done, commit it the whole
        way."""
        if not batch.only_settled or any(entry.stream != self._keys.events for entry in batch.settled):
            return False
        keys = [self._keys.ruleset, self._keys.events, *(self._keys.waits(t) for t in types)]
        return int(self._ack_settled(keys=keys, args=[version, ENGINE_GROUP, *(e.id for e in batch.settled)])) >= 0

    # -- in the transaction ----------------------------------------------------------------------------------

    def queue(self, pipe: Any, batch: Batch, outcome: Outcome, now: datetime) -> None:
        """Queue the batch's announcements and decision records on the engine's MULTI."""
        for memo in batch.memos:  # kept a while after the commit, never deleted (flow/decide.py)
            pipe.expire(memo, self._memo_keep_s)
        if self._announce:
            events = announce.announcements(outcome.changes, now)
            if events:
                self._planner.queue_on(pipe, events)
        if not batch.decisions:
            return
        held: dict[str, tuple[str, str] | tuple[str, str, dict[str, Any] | None]] = dict(outcome.effects.declined)
        for change in outcome.changes:
            if change.created and change.run.status is RunStatus.QUEUED:
                held[change.run.id] = ("queued", f"workflow {change.run.workflow} is at its concurrency limit "
                                                 f"({change.run.spec.concurrency}); the run starts when a slot frees")
        held.update(outcome.effects.slotted)  # a rule's pool: waiting, singleton_skipped, replaced
        for planned in batch.decisions:
            record = decisions.encode(decisions.held_back(planned.decisions, held), event=planned.event,
                                      depth=planned.depth, at=now, omitted=planned.omitted)
            pipe.execute_command("SET", self._keys.decisions(planned.entry.id), record, "EX", self._retention_s)


def unheard(index: RuleIndex, body: Any) -> bool:
    """Whether `body` (a stored event) is one of the engine's announcements that no rule listens to."""
    if not isinstance(body, dict):
        return False
    kind, source = body.get("type"), body.get("source")
    return (kind in announce.TYPES and isinstance(source, str) and source.startswith(RUNS)
            and not index.candidates(kind))


def _depth_of(meta: bytes | None) -> int:
    """A run's depth from its stored meta (untrusted): 0 when the run is gone or the value is not a count."""
    if meta is None:
        return 0
    try:
        depth = loads(meta).get("depth", 0)
    except (ValueError, AttributeError):
        return 0
    return depth if isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0 else 0
