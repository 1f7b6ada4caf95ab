"""③ Why an event started the runs it did, and why other rules did not: the engine's decisions, per event.

For each event that a rule listens to (its type matches the rule's), the engine keeps one small record,
written in the transaction that acknowledges the event, for as long as runs are kept (`run_retention_s`):

    matched       the rule matched: `run` is the run it started (or had started: a redelivery)
    queued        ... and that run waits for a slot of its workflow's concurrency limit
    error         the rule matched but its parameters did not render: `run` is the failed run saying why
    cut           the rule matched but the event's chain is too deep (events/chains.py): `run` is the record
    skipped       the rule matched, but its schedule's previous run still runs (overlap: skip)
    held          ... and the event waits for it to end (overlap: queue-one)
    waiting       the rule matched; its run waits for a slot of the rule's keyed `concurrency` (`detail`: key,
                  limit, priority)
    singleton_skipped   the rule matched, but its singleton (mode skip) has a run for the key: no run
                  (`detail`: key, holder)
    replaced      the rule matched; its singleton (mode cancel_previous) cancelled the key's run(s) and the new
                  run starts when the slot frees (`detail`: key, cancelled)
    not_matched   the rule listens to the type, but was disabled or a `match:` condition failed (`reason`)

A rule whose source glob does not match is left out, like rules that do not listen to the type: those are
the many rules an event was never meant for. An event with nothing to record has no record at all.
Records are bounded: at most MAX_RULES rules (`omitted` counts the rest), reasons of REASON_MAX_CHARS, a
`detail` of at most DETAIL_MAX_ITEMS flat items (strings cut like reasons, lists to DETAIL_MAX_ITEMS).

Readers (the API's GET /events/{entry_id}, `orch events show`, the web UI):

    event_decisions(client, keys, entry_id) -> dict | None    the event, its state and its decisions
    decisions_of(client, keys, entry_ids) -> dict[str, dict | None]   just the records, one MGET
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import redis

from ..jsonutil import dumps, loads
from ..state.keys import ENGINE_GROUP, Keys
from .recent import record_or_none
from .stream import compare_ids

if TYPE_CHECKING:
    from ..rules.model import MatchResult
    from ..workflows.lifecycle import RunRequest

__all__ = ["ENTRY_ID_PATTERN", "MAX_RULES", "OUTCOMES", "REASON_MAX_CHARS", "Decision", "EntryIdError",
           "check_entry_id", "decisions_of", "encode", "event_decisions", "held_back", "planned", "read_record"]

MAX_RULES = 50
REASON_MAX_CHARS = 300
OUTCOMES = ("matched", "queued", "error", "cut", "skipped", "held", "not_matched", "waiting", "singleton_skipped",
            "replaced")
DETAIL_MAX_ITEMS = 8
ENTRY_ID_PATTERN = r"^[0-9]{1,19}-[0-9]{1,19}$"  # each part below 2**64, as Redis wants
_ENTRY_ID = re.compile(ENTRY_ID_PATTERN)


class EntryIdError(ValueError):
    """A stream entry id that is not `<milliseconds>-<sequence>`."""


@dataclass(frozen=True)
class Decision:
    """What became of one rule for one event."""

    rule: str
    outcome: str
    run: str | None = None
    reason: str | None = None
    detail: dict[str, Any] | None = None  # of a flow-control outcome: key, limit, priority, holder, ...

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "outcome": self.outcome}
        if self.run is not None:
            out["run"] = self.run
        if self.reason is not None:
            out["reason"] = _bounded(self.reason)
        detail = _detail(self.detail)
        if detail:
            out["detail"] = detail
        return out

    @classmethod
    def from_dict(cls, value: Any) -> Decision | None:
        """A decision read back from Redis, or None when it is not one."""
        if not isinstance(value, dict) or value.get("outcome") not in OUTCOMES:
            return None
        rule, run, reason = value.get("rule"), value.get("run"), value.get("reason")
        if not isinstance(rule, str) or not isinstance(run, str | None) or not isinstance(reason, str | None):
            return None
        return cls(rule, value["outcome"], run, reason, _detail(value.get("detail")))


def _bounded(text: str) -> str:
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 1] + "…"


def _detail(value: Any) -> dict[str, Any] | None:
    """A decision's detail, bounded: flat items only (text, numbers, booleans, lists of text)."""
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {}
    for key, item in list(value.items())[:DETAIL_MAX_ITEMS]:
        if isinstance(item, str):
            out[str(key)] = _bounded(item)
        elif item is None or isinstance(item, bool | int | float):
            out[str(key)] = item
        elif isinstance(item, list):
            out[str(key)] = [_bounded(str(i)) for i in item[:DETAIL_MAX_ITEMS]]
    return out or None


# -- writing (the engine) ------------------------------------------------------------------------------------


def planned(outcomes: Sequence[tuple[MatchResult, str]], requests: Sequence[RunRequest]) -> list[Decision]:
    """The decisions of one planned event: `outcomes` as plan_event evaluated them (matched, not_matched,
    error), with the run each matching rule asks for; rules stopped by their source glob are left out."""
    asked = {request.rule: request for request in requests}
    out = []
    for result, label in outcomes:
        if label == "not_matched":
            if result.stopped_by != "source":
                out.append(Decision(result.rule, "not_matched", reason=result.reason))
            continue
        request = asked.get(result.rule)
        run = request.run_id if request is not None else None
        if request is not None and request.cut:
            out.append(Decision(result.rule, "cut", run, request.error))
        elif label == "error":
            out.append(Decision(result.rule, "error", run, request.error if request is not None else None))
        else:
            out.append(Decision(result.rule, "matched", run))
    return out


def held_back(decisions: Iterable[Decision],
              reasons: Mapping[str, tuple[str, str] | tuple[str, str, dict[str, Any] | None]]) -> list[Decision]:
    """`decisions` with what the batch did to their runs: a run in `reasons` (run id -> (outcome, why[,
    detail])) was queued or is waiting for a slot, skipped by its singleton, replacing a singleton's run, or
    skipped or held by its schedule's overlap policy, instead of started."""
    out = []
    for decision in decisions:
        found = reasons.get(decision.run or "") if decision.outcome == "matched" else None
        if found:
            detail = found[2] if len(found) > 2 else None
            out.append(Decision(decision.rule, found[0], decision.run, found[1], detail))
        else:
            out.append(decision)
    return out


def encode(decisions: Sequence[Decision], *, event: Mapping[str, str], depth: int, at: datetime) -> bytes:
    """The record of one event's decisions as stored: bounded to MAX_RULES rules."""
    return dumps({"event": dict(event), "depth": depth, "decided_at": at.isoformat().replace("+00:00", "Z"),
                  "rules": [d.to_dict() for d in decisions[:MAX_RULES]],
                  "omitted": max(0, len(decisions) - MAX_RULES)})


def read_record(raw: bytes | None) -> dict[str, Any] | None:
    """A stored record, checked (it comes from Redis): unknown shapes read as None, bad rules are dropped."""
    if raw is None:
        return None
    try:
        value = loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("rules"), list):
        return None
    rules = [d.to_dict() for d in map(Decision.from_dict, value["rules"][:MAX_RULES]) if d is not None]
    depth, omitted = value.get("depth"), value.get("omitted")
    return {"rules": rules, "depth": depth if _count(depth) else 0, "omitted": omitted if _count(omitted) else 0,
            "decided_at": value["decided_at"] if isinstance(value.get("decided_at"), str) else None}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# -- reading (API, CLI, UI) ----------------------------------------------------------------------------------


def check_entry_id(entry_id: str) -> str:
    """`entry_id` if it is a stream entry id (`1717000000000-0`); EntryIdError otherwise."""
    if not _ENTRY_ID.match(entry_id):
        raise EntryIdError(f"{entry_id[:80]!r} is not a stream entry id like 1717000000000-0 (the entry_id of "
                           "`orch events list --json` or GET /events)")
    return entry_id


def decisions_of(client: redis.Redis, keys: Keys, entry_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
    """The decision records of several events (one MGET), None where there is none; EntryIdError for a
    malformed id. For a page listing events."""
    if not entry_ids:
        return {}
    raws = client.mget([keys.decisions(check_entry_id(e)) for e in entry_ids])
    return {entry_id: read_record(raw) for entry_id, raw in zip(entry_ids, raws, strict=True)}


def event_decisions(client: redis.Redis, keys: Keys, entry_id: str) -> dict[str, Any] | None:
    """One event (as `orch events list --json` shows it, None once trimmed), where the engine is with it
    (`state`: waiting, in_progress or processed) and its decisions (None: no rule listens to its type, or
    the record expired); None when neither the event nor a record exists. EntryIdError for a bad id."""
    check_entry_id(entry_id)
    pipe = client.pipeline(transaction=False)
    pipe.xrange(keys.events, min=entry_id, max=entry_id)
    pipe.get(keys.decisions(entry_id))
    rows, raw = pipe.execute()
    event = record_or_none(entry_id, rows[0][1]) if rows else None
    record = read_record(raw)
    if event is None and record is None:
        return None
    return {"entry_id": entry_id, "event": event, "state": "processed" if record else _state(client, keys, entry_id),
            "decisions": record}


def _state(client: redis.Redis, keys: Keys, entry_id: str) -> str:
    """Whether the engine's group has read the entry (in_progress until acknowledged) or not yet (waiting)."""
    try:
        groups = client.xinfo_groups(keys.events)
    except redis.ResponseError:
        return "waiting"
    group = next((g for g in groups if _text(g.get("name")) == ENGINE_GROUP), None)
    if group is None or compare_ids(entry_id, _text(group.get("last-delivered-id")) or "0-0") > 0:
        return "waiting"
    pending = client.xpending_range(keys.events, ENGINE_GROUP, min=entry_id, max=entry_id, count=1)
    return "in_progress" if pending else "processed"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
