"""③ Why an event started the runs it did, and why other rules did not: the engine's decisions, per event.

For each event that a rule listens to (its type matches the rule's), the engine keeps one small record,
written in the transaction that acknowledges the event, for as long as events are kept
(`events_retention_s`: the record expires with the event it explains). Each rule's decision has an
`outcome`:

    matched       the rule matched: `run` is the run it started (or had started: a redelivery)
    queued        ... and that run waits for a slot of its workflow's concurrency limit
    error         the rule matched but its parameters did not render: `run` is the failed run saying why
    cut           the rule matched but the event's chain is too deep (events/chains.py): `run` is the record
    skipped       the rule matched, but its schedule's previous run still runs (overlap: skip)
    held          ... and the event waits for it to end (overlap: queue-one)
    not_matched   the rule listens to the type, but was disabled or a condition failed

and, for rules with flow control (FLOW_OUTCOMES; built with `flow_decision`), what the control did:

    throttled          the run starts later (`detail.due`: when its throttle lets it start)
    debounced          the event is merged into a pending run of its key
    batched            the event is added to a pending batch
    rate_limited       the event is dropped: the key is over its rate
    waiting            the run waits for a slot of its key's concurrency limit
    singleton_skipped  the event is dropped: a run for its key is active
    replaced           the previous run(s) for its key are cancelled; the new run starts when the slot frees

Besides `rule` and `outcome`, a decision may carry:

    run           the run id (started, failed, held back, or the one a flow control merged into)
    reason        a sentence for people (render errors keep their message here)
    stopped_by    of not_matched: disabled, source, match (a pattern condition) or if (an `if:` expression)
    path          of a failed condition: the field path (data.order.region)
    seen          ... the value the event had there, summarized (events/summary.py); or, instead,
    missing       true: the event has no such field
    expected      ... what the rule asked for, as written, summarized
    detail        of a flow decision: a small mapping (control, key, hold, due, ...), summarized

A rule whose source glob does not match is left out, like rules that do not listen to the type: those are
the many rules an event was never meant for. An event with nothing to record has no record at all.
Records are bounded (`bounded`): every decision that is not not_matched is kept (up to MAX_RECORDED), and
not_matched ones, the first in load order, up to MAX_RULES in all (`omitted` counts the rest); reasons of REASON_MAX_CHARS,
values summarized, rule names of RULE_MAX_CHARS and run ids of RUN_MAX_CHARS. Only a sample of events (ORCH_EXPLAIN_SAMPLE, default all; `sampled`: the same on every
engine) records not_matched decisions, and of those at most MAX_RULES: the engine takes the full matches from
the rule index's fast path and explains at most MAX_RULES of the other rules (those the index could not rule
out first: the near misses, then in load order; `omitted` counts the rest, which the miss metrics do not
see either). Every event records its other decisions.

Readers (the API's GET /events/{entry_id}, `orch events show`, the web UI):

    event_decisions(client, keys, entry_id) -> dict | None    the event, its state and its decisions
    decisions_of(client, keys, entry_ids) -> dict[str, dict | None]   just the records, one MGET
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import redis

from ..jsonutil import dumps, loads
from ..rules.model import MISSING
from ..state.keys import ENGINE_GROUP, Keys
from .recent import record_or_none
from .stream import compare_ids
from .summary import cut, summarize, summarize_mapping

if TYPE_CHECKING:
    from ..rules.model import MatchResult
    from ..workflows.lifecycle import RunRequest

__all__ = ["ENTRY_ID_PATTERN", "FLOW_OUTCOMES", "MAX_RULES", "OUTCOMES", "REASON_MAX_CHARS", "Decision",
           "EntryIdError", "MAX_RECORDED", "bounded", "check_entry_id", "decisions_of", "encode", "event_decisions", "flow_decision",
           "held_back", "planned", "read_record", "sampled", "with_flow"]

MAX_RULES = 50  # decisions a record keeps when some are not_matched (those are cut first)
MAX_RECORDED = 1000  # decisions a record ever keeps: an event that starts or holds back more runs loses the rest
REASON_MAX_CHARS = 300
PATH_MAX_CHARS = 200
RULE_MAX_CHARS = 128  # rule names are shorter (rules.model): a longer one in Redis was not written by an engine
RUN_MAX_CHARS = 200
FLOW_OUTCOMES = ("throttled", "debounced", "batched", "rate_limited", "waiting", "singleton_skipped", "replaced")
OUTCOMES = ("matched", "queued", "error", "cut", "skipped", "held", "not_matched", *FLOW_OUTCOMES)
ENTRY_ID_PATTERN = r"^[0-9]{1,19}-[0-9]{1,19}$"  # each part below 2**64, as Redis wants
_ENTRY_ID = re.compile(ENTRY_ID_PATTERN)
_STOPPED_BY = re.compile(r"^[a-z_]{1,32}$")  # disabled, source, match, if (and what later stages add)


class EntryIdError(ValueError):
    """A stream entry id that is not `<milliseconds>-<sequence>`."""


@dataclass(frozen=True)
class Decision:
    """What became of one rule for one event (the fields are the module docstring's)."""

    rule: str
    outcome: str
    run: str | None = None
    reason: str | None = None
    detail: Mapping[str, Any] | None = None
    stopped_by: str | None = None
    path: str | None = None
    seen: Any = None  # MISSING when the event has no value at `path`
    expected: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": cut(self.rule, RULE_MAX_CHARS), "outcome": self.outcome}
        if self.run is not None:
            out["run"] = cut(self.run, RUN_MAX_CHARS)
        if self.reason is not None:
            out["reason"] = cut(self.reason, REASON_MAX_CHARS)
        if self.stopped_by is not None:
            out["stopped_by"] = self.stopped_by
        if self.path is not None:
            out["path"] = cut(self.path, PATH_MAX_CHARS)
            out.update({"missing": True} if self.seen is MISSING else {"seen": summarize(self.seen)})
            out["expected"] = summarize(self.expected)
        if self.detail:
            out["detail"] = summarize_mapping(self.detail)
        return out

    @classmethod
    def from_dict(cls, value: Any) -> Decision | None:
        """A decision read back from Redis, or None when it is not one (a field of the wrong shape)."""
        if not isinstance(value, dict) or value.get("outcome") not in OUTCOMES:
            return None
        rule, run, reason, path = value.get("rule"), value.get("run"), value.get("reason"), value.get("path")
        stopped_by, detail, missing = value.get("stopped_by"), value.get("detail"), value.get("missing", False)
        if not (isinstance(rule, str) and _optional_str(run, reason, path) and isinstance(detail, dict | None)
                and (stopped_by is None or isinstance(stopped_by, str) and _STOPPED_BY.match(stopped_by))
                and isinstance(missing, bool)):
            return None
        seen = MISSING if missing else value.get("seen")
        return cls(rule, value["outcome"], run, reason, detail, stopped_by, path, seen, value.get("expected"))


def _optional_str(*values: Any) -> bool:
    return all(isinstance(v, str | None) for v in values)


def flow_decision(rule: str, outcome: str, *, run: str | None = None, reason: str | None = None,
                  detail: Mapping[str, Any] | None = None) -> Decision:
    """The decision of a rule's flow control for one event: `outcome` one of FLOW_OUTCOMES, `run` the run it
    started, delayed or merged the event into (if any), `reason` a sentence for people, `detail` a small
    mapping such as {"key": "c-42", "due": "2026-05-01T12:00:05Z"} (summarized when stored)."""
    if outcome not in FLOW_OUTCOMES:
        raise ValueError(f"{outcome!r} is not a flow-control outcome (one of {', '.join(FLOW_OUTCOMES)})")
    return Decision(rule, outcome, run, reason, detail=dict(detail) if detail else None)


def sampled(source: str, event_id: str, fraction: float) -> bool:
    """Whether the event (source, id) is among the `fraction` (0..1) whose not_matched decisions are
    recorded: a hash of its identity, so every engine, and every delivery, decides the same."""
    if fraction >= 1:
        return True
    if fraction <= 0:
        return False
    digest = hashlib.blake2b(f"{source}\x1f{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


# -- writing (the engine) ------------------------------------------------------------------------------------


def planned(outcomes: Sequence[tuple[MatchResult, str]], requests: Sequence[RunRequest]) -> list[Decision]:
    """The decisions of one planned event: `outcomes` as plan_event evaluated them (matched, not_matched,
    error), with the run each matching rule asks for; rules stopped by their source glob are left out."""
    asked = {request.rule: request for request in requests}
    out = []
    for result, label in outcomes:
        if label == "not_matched":
            if result.stopped_by != "source":
                out.append(Decision(result.rule, "not_matched", reason=result.reason, stopped_by=result.stopped_by,
                                    path=result.path, seen=result.seen, expected=result.expected))
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
              reasons: Mapping[str, tuple[str, str] | tuple[str, str, Mapping[str, Any] | None]]) -> list[Decision]:
    """`decisions` with what the batch did to their runs: a run in `reasons` (run id -> (outcome, why[,
    detail])) was queued for a slot, skipped or held by its schedule's overlap policy, or held back by a flow
    control, instead of started."""
    out = []
    for decision in decisions:
        found = reasons.get(decision.run or "") if decision.outcome == "matched" else None
        if found:
            detail = found[2] if len(found) > 2 else None
            out.append(Decision(decision.rule, found[0], decision.run, found[1], detail))
        else:
            out.append(decision)
    return out


def with_flow(decisions: Iterable[Decision], flows: Mapping[str, Decision]) -> list[Decision]:
    """`decisions` with the flow-control decisions of `flows` (rule name -> flow_decision(...)) in place of
    those rules' matched decisions; a flow decision for a rule not among them is added at the end."""
    out, used = [], set()
    for decision in decisions:
        flow = flows.get(decision.rule) if decision.outcome == "matched" else None
        out.append(flow or decision)
        used.add(decision.rule)
    return out + [flow for rule, flow in flows.items() if rule not in used]


def bounded(decisions: Sequence[Decision]) -> list[Decision]:
    """The decisions a record keeps, in their order: every one that is not `not_matched` (what started, held
    back or failed a run: up to MAX_RECORDED), and as many not_matched ones, the first, as fit in MAX_RULES."""
    room = max(0, MAX_RULES - sum(1 for d in decisions if d.outcome != "not_matched"))
    kept = []
    for decision in decisions:
        if decision.outcome != "not_matched":
            kept.append(decision)
        elif room:
            kept.append(decision)
            room -= 1
    return kept[:MAX_RECORDED]


def encode(decisions: Sequence[Decision], *, event: Mapping[str, str], depth: int, at: datetime,
           omitted: int = 0) -> bytes:
    """The record of one event's decisions as stored, `bounded`; `omitted` counts the rules left out, with the
    `omitted` ones planning never explained (plan.Outcomes.omitted)."""
    kept = bounded(decisions)
    return dumps({"event": dict(event), "depth": depth, "decided_at": at.isoformat().replace("+00:00", "Z"),
                  "rules": [d.to_dict() for d in kept], "omitted": omitted + len(decisions) - len(kept)})


def read_record(raw: bytes | None) -> dict[str, Any] | None:
    """A stored record, checked (it comes from Redis): unknown shapes read as None, bad rules are dropped,
    values are summarized again (a record written by someone else may be of any size)."""
    if raw is None:
        return None
    try:
        value = loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("rules"), list):
        return None
    rules = [d.to_dict() for d in map(Decision.from_dict, value["rules"][:MAX_RECORDED]) if d is not None]
    depth, omitted = value.get("depth"), value.get("omitted")
    return {"rules": rules, "depth": depth if _count(depth) else 0, "omitted": omitted if _count(omitted) else 0,
            "decided_at": cut(value["decided_at"], 40) if isinstance(value.get("decided_at"), str) else None}


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
