"""③ Deciding, at plan time, what a rule's hold-back control does with each event it matched.

After an engine batch is planned, every run request of a rule with `debounce`, `batch`, `throttle` or
`rate_limit` (rules/flow_model.py) goes through flow_decide.lua, all of them in one pipelined round trip.
The script decides once per (rule, event) and keeps its answer (the memo): an event delivered again gets
the same answer, and is held, merged or counted once. That holds before the transaction that acknowledges
the event (a crash between the decision and the commit: up to MEMO_TTL_S) and after it (`memo_keep_s`,
which that transaction sets, `Batch.memos`): a commit whose EXEC reply was lost is processed again
(Engine._unfinished), and an engine that stalled past engine_claim_idle_s may decide for entries another
engine reclaimed and committed meanwhile. Both find the memo, so neither merges the event a second time.

    start   the request stays: the run starts now, as without the control (decision `matched`)
    delay   throttle: the event is held; its run (same id as ever) starts at its GCRA time (`throttled`)
    merge   debounce, batch: the event joined the key's hold; the hold's run (id from rule and hold) starts
            when the hold is released (`debounced`, `batched`)
    drop    rate_limit: no run (`rate_limited`)

Requests with a render error or a cut chain are not held: their failed run is recorded as without a control.
Every decision is counted in orch_flow_events_total{rule, control, action} and recorded for the event
(events/decisions.py), with a `detail` naming the key, the hold and when it is due.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis

from ..events.decisions import Decision
from ..events.stream import Entry
from ..jsonutil import loads
from ..metrics import FLOW_EVENTS, FLOW_RELEASES
from ..rules.flow_model import HoldControl, shown_key
from ..rules.model import Rule
from ..settings import Settings
from ..state import lua
from ..state.keys import Keys
from ..workflows.lifecycle import RunRequest
from ..workflows.runs import iso_utc

if TYPE_CHECKING:
    from ..engine.batch import Batch

__all__ = ["MEMO_KEEP_MIN_S", "MEMO_TTL_S", "OUTCOMES", "Decider", "digest", "hold_run_id", "memo_keep_s"]

MEMO_TTL_S = 7 * 86400  # a decision outlives any redelivery of its event (the commit shortens it: memo_keep_s)
MEMO_KEEP_MIN_S = 600.0  # how long a memo outlives its commit, at least
MEMO_KEEP_CLAIMS = 10  # ... and in claim idle times: well past any reclaim race or retried commit
OUTCOMES = {"throttle": "throttled", "debounce": "debounced", "batch": "batched", "rate_limit": "rate_limited"}
ACTIONS = {"start": "passed", "delay": "delayed", "merge": "merged", "drop": "dropped"}


def digest(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).hexdigest()


def hold_run_id(rule: str, hold: str) -> str:
    """The run a debounce or batch hold starts: one per (rule, hold), derived like every run id (a hash
    personalised apart from derive_run_id's, so no event can be crafted to take it)."""
    return hashlib.blake2b(f"{rule}\x00{hold}".encode(), digest_size=12, person=b"orch-flow-hold").hexdigest()


@dataclass(frozen=True)
class Asked:
    """One run request of a rule with a hold-back control, and the event's key."""

    entry: Entry
    request: RunRequest
    control: HoldControl
    key: str  # whole: its state's key is a hash of all of it (`shown` is what records keep)
    key_error: str | None
    memo: str  # the key of its decision's memo
    recalled: bool = False  # the rule has no such control now: an earlier rule-set version's decision stands

    @property
    def shown(self) -> str:
        return shown_key(self.key)


class Decider:
    """Calls the decide script for the held-back requests of a batch and applies the answers to it."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings, rules: Mapping[str, Rule],
                 recalled: frozenset[str] = frozenset()) -> None:
        self._client = client
        self._keys = keys
        self._settings = settings
        self._rules = rules
        self._recalled = recalled  # rules without a control now whose memos may exist (FlowControl)
        self._script = lua.register(client, "flow_decide")

    def hold(self, batch: Batch, now: datetime) -> None:
        """Decide for every held-back request of `batch`; take out those that do not start now. A request
        of a rule that had a control under an earlier rule-set version keeps the decision made then."""
        asked, recall = self._asked(batch)
        if asked or recall:
            answers, memos = self._decide(asked, recall, now)
            found = [(one, memo) for one, memo in zip(recall, memos, strict=True) if memo is not None]
            apply_answers(batch, asked + [as_recalled(one, memo) for one, memo in found],
                          answers + [memo for _, memo in found], now)

    def _asked(self, batch: Batch) -> tuple[list[Asked], list[Asked]]:
        out: list[Asked] = []
        recall: list[Asked] = []
        for entry, requests in batch.requests:
            if entry.stream != self._keys.events:  # a released hold's run (release.py): decided already
                continue
            body: Any = None
            for request in requests:
                if request.error is not None or request.params is None:
                    continue
                rule = self._rules.get(request.rule)
                if rule is None or rule.hold is None:
                    if request.rule in self._recalled:
                        recall.append(Asked(entry, request, UNKNOWN, "", None, memo_key(self._keys, request), True))
                    continue
                if body is None:
                    body = loads(entry.fields[b"e"])
                key, error = rule.hold.key_of(body)
                out.append(Asked(entry, request, rule.hold, key, error, memo_key(self._keys, request)))
        return out, recall

    def _decide(self, asked: list[Asked], recall: list[Asked],
                now: datetime) -> tuple[list[dict[str, Any] | Exception], list[dict[str, Any] | Exception | None]]:
        """The script's answers for `asked`, and the memos of `recall` (None: none), in one round trip."""
        keys, settings = self._keys, self._settings
        now_ms = int(now.timestamp() * 1000)
        pipe = self._client.pipeline(transaction=False)
        for rule in sorted({one.request.rule for one in asked}):  # its memos may outlive its control
            pipe.set(keys.flow_ruled(rule), 1, ex=MEMO_TTL_S)
        marked = len(pipe)
        for one in asked:
            request, control = one.request, one.control
            self._script(keys=[one.memo, keys.flow_state(request.rule, digest(control.kind, one.key)), keys.flow_due,
                               keys.flow_seq, keys.results, keys.metric(FLOW_RELEASES.name), keys.run(request.run_id)],
                         args=[control.kind, now_ms, MEMO_TTL_S * 1000, one.entry.fields[b"e"], one.entry.id,
                               request.depth, request.rule, one.shown, keys.flow_hold_prefix, control.period_ms,
                               control.max_wait_ms, control.limit, control.burst, settings.flow_hold_max_events,
                               settings.flow_hold_max_bytes], client=pipe)
        for one in recall:
            pipe.get(one.memo)
        replies = pipe.execute(raise_on_error=False)[marked:]
        answers = [read_answer(answer) for answer in replies[:len(asked)]]
        return answers, [None if raw is None else read_answer(raw) for raw in replies[len(asked):]]


UNKNOWN = HoldControl("", None)  # a recalled request's control, until its memo says which it was
KIND_OF = {"delay": "throttle", "drop": "rate_limit", "merge": "batch", "start": "throttle"}  # memos without `k`


def as_recalled(one: Asked, memo: dict[str, Any] | Exception) -> Asked:
    """A recalled request with the control and key its memo names."""
    if isinstance(memo, Exception):
        return one
    kind, key = memo.get("k"), memo.get("key")
    control = HoldControl(kind if kind in OUTCOMES else KIND_OF[memo["a"]], None)
    return dataclasses.replace(one, control=control, key=key if isinstance(key, str) else "")


def read_answer(raw: Any) -> dict[str, Any] | Exception:
    """A decision as read back from Redis (untrusted: a memo may have been written by anyone): a dict whose
    action is known, else the error that fails its entry (retried, then dead-lettered), never the loop."""
    if isinstance(raw, Exception):
        return raw
    try:
        answer = loads(raw)
    except (ValueError, TypeError) as exc:
        return ValueError(f"the decision is not JSON: {exc}")
    if not isinstance(answer, dict) or answer.get("a") not in ACTIONS:
        return ValueError(f"the decision is not one: {str(raw)[:120]}")
    if answer["a"] in ("delay", "merge") and not isinstance(answer.get("hold"), str):
        return ValueError(f"the decision names no hold: {str(raw)[:120]}")
    return answer


def memo_keep_s(settings: Settings) -> int:
    """How long a decision's memo is kept once the event is acknowledged: an engine that planned the entry
    before another committed it (a stall past engine_claim_idle_s, a lost EXEC reply) gets the same answer."""
    return int(max(MEMO_KEEP_MIN_S, MEMO_KEEP_CLAIMS * settings.engine_claim_idle_s))


def memo_key(keys: Keys, request: RunRequest) -> str:
    return keys.flow_memo(digest(request.rule, request.event.source, request.event.id))


def apply_answers(batch: Batch, asked: list[Asked], answers: list[dict[str, Any] | Exception],
                  now: datetime) -> None:
    """Pure: the batch with the decisions made: held requests taken out (an entry left with none is only
    acknowledged), each decision recorded and counted, and the memos whose life the commit shortens. An entry whose
    decision failed (a script error) is not acknowledged: it is retried, and dead-lettered with the reason."""
    for one, answer in zip(asked, answers, strict=True):
        if isinstance(answer, Exception):
            batch.failed[one.entry] = f"flow control of rule {one.request.rule}: {type(answer).__name__}: {answer}"
    held: set[int] = set()
    by_entry = {planned.entry.id: planned for planned in batch.decisions}
    for one, answer in zip(asked, answers, strict=True):
        if isinstance(answer, Exception) or one.entry in batch.failed:
            continue  # retried whole: its other decisions are answered again by their memos
        action = str(answer.get("a"))
        batch.evaluations.inc(FLOW_EVENTS, one.request.rule, one.control.kind, ACTIONS.get(action, action))
        if action != "start":
            held.add(id(one.request))
        planned = by_entry.get(one.entry.id)
        if planned is not None:
            decision = recalled_record(one, answer, now) if one.recalled else decide_record(one, answer, now)
            planned.decisions[:] = [decision if d.rule == one.request.rule else d for d in planned.decisions]
    batch.memos.extend(one.memo for one in asked if one.entry not in batch.failed)  # retried ones keep theirs
    if not held and not batch.failed:
        return
    kept: list[tuple[Entry, list[RunRequest]]] = []
    for entry, requests in batch.requests:
        if entry in batch.failed:
            continue
        left = [r for r in requests if id(r) not in held]
        if left:
            kept.append((entry, left))
        else:
            batch.settled.append(entry)
    batch.requests = kept
    batch.decisions = [planned for planned in batch.decisions if planned.entry not in batch.failed]


def decide_record(one: Asked, answer: Mapping[str, Any], now: datetime) -> Decision:
    """The decision record of one answer: outcome, the run it starts (if any), why, and the detail."""
    control, request, action = one.control, one.request, answer.get("a")
    detail: dict[str, Any] = {"control": control.kind, "key": one.shown}
    if one.key_error:
        detail["key_error"] = one.key_error
    key = f"key {one.shown!r}" if control.key is not None else "the rule's only key"
    if action == "start":
        return Decision(request.rule, "matched", request.run_id, detail=detail)
    if action == "drop":
        detail["in_window"] = answer.get("n")
        return Decision(request.rule, "rate_limited", None, f"rate_limit of {key}: {answer.get('n')} runs started "
                        f"in the last {control.period_ms / 1000:g}s (limit {control.limit}); event dropped", detail)
    hold, due = str(answer.get("hold")), _when(answer.get("due"), now)
    detail.update(hold=hold, due=due)
    if action == "delay":
        return Decision(request.rule, "throttled", request.run_id, f"throttle of {key} ({control.limit} per "
                        f"{control.period_ms / 1000:g}s, burst {control.burst}): the run starts at {due}", detail)
    detail["position"] = answer.get("n")
    run, outcome = hold_run_id(request.rule, hold), OUTCOMES[control.kind]
    if answer.get("released"):
        why = "the batch is full" if answer.get("why") == "full" else "the hold reached its bound"
        return Decision(request.rule, outcome, run, f"{control.kind} of {key}: event {answer.get('n')} of hold "
                        f"{hold}; {why}: its run starts now", detail)
    until = {"quiet": "unless another event of the key comes first", "max_wait": "(its max_wait_s)",
             "timeout": "unless it fills first"}.get(str(answer.get("why")), "")
    return Decision(request.rule, outcome, run, f"{control.kind} of {key}: event {answer.get('n')} of hold {hold}; "
                    f"its run starts at {due} {until}".rstrip(), detail)


def recalled_record(one: Asked, answer: Mapping[str, Any], now: datetime) -> Decision:
    """The record of a decision made under an earlier rule-set version, which stands."""
    request, kind, action = one.request, one.control.kind, answer.get("a")
    detail: dict[str, Any] = {"control": kind, "key": one.shown, "recalled": True}
    why = f"{kind} decided for this event under an earlier rule-set version, which stands"
    if action == "start":
        return Decision(request.rule, "matched", request.run_id, detail=detail)
    if action == "drop":
        return Decision(request.rule, "rate_limited", None, f"{why}: event dropped", detail)
    hold, due = str(answer.get("hold")), _when(answer.get("due"), now)
    detail.update(hold=hold, due=due)
    if action == "delay":
        return Decision(request.rule, "throttled", request.run_id, f"{why}: the run starts at {due}", detail)
    return Decision(request.rule, OUTCOMES.get(kind, "batched"), hold_run_id(request.rule, hold),
                    f"{why}: the event is in hold {hold}, due at {due}", detail)


def _when(ms: Any, now: datetime) -> str:
    try:
        return iso_utc(datetime.fromtimestamp(float(ms) / 1000, UTC)) or ""
    except (TypeError, ValueError, OverflowError):
        return iso_utc(now) or ""
