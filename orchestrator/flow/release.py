"""③ Releasing holds: due holds go to the results stream, and the engine makes each into one run.

    ReleaseHolds   a maintenance chore (engine/maintenance.py), every `flow_release_interval_s`: the
                   release script moves due holds, one results entry each (fields `h` and `e`), atomically
                   with deleting them; any number of engines may run it, each hold is released once
    Released       one such entry as read back (untrusted: checked field by field)
    run_request    the run a released hold asks for, pure:
                     debounce, batch   id from (rule, hold) (decide.hold_run_id); `event` is the last
                                       event (debounce: the latest state) or the first (batch), as
                                       Inngest gives them; `events` is every event, in arrival order
                     throttle          the event's own run (derive_run_id), started late
                   Parameters are rendered with `event`, `data` (the event's) and `events` (all of them);
                   the run keeps the events (Run.events) for its tasks' templates (`events`) and names
                   them in `orch runs show`. The rule's `concurrency`, `singleton` and `priority` apply
                   to the run as to a direct one, their key and priority taken from that same `event`
                   (the last for debounce, the first for batch, the held event for throttle), under the
                   rules of the current rule-set version, which the run records.

A release entry is acknowledged in the transaction that creates its run, like any event: a redelivery
finds the run there. An entry that cannot be read, or whose rule is gone, is dead-lettered with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import RuleError, WorkflowError
from ..events.envelope import Event, event_from_mapping
from ..jsonutil import loads
from ..metrics import FLOW_RELEASES
from ..project import Project
from ..rules.match import event_view
from ..settings import Settings
from ..state import lua
from ..state.keys import Keys
from ..tracing import of_event
from ..workflows.lifecycle import RunRequest
from ..workflows.runs import EventRef, derive_run_id
from .decide import hold_run_id

__all__ = ["RELEASE_FIELD", "ReleaseHolds", "Released", "run_request"]

log = logging.getLogger(__name__)

RELEASE_FIELD = b"h"
PER_CALL = 100  # holds one script call releases
CALLS_PER_TURN = 20


@dataclass(frozen=True)
class Released:
    """A released hold, from its results entry."""

    hold: str
    rule: str
    kind: str
    key: str
    reason: str
    depth: int
    entries: list[str]
    events: list[Event]

    @classmethod
    def from_fields(cls, fields: Mapping[bytes, bytes]) -> Released:
        meta, bodies = loads(fields[RELEASE_FIELD]), loads(fields[b"e"])
        if not isinstance(meta, dict) or not isinstance(bodies, list) or not bodies:
            raise ValueError("a hold release needs its meta and at least one event")
        texts = {name: meta.get(name) for name in ("hold", "rule", "kind", "key", "reason")}
        if not all(isinstance(v, str) for v in texts.values()):
            raise ValueError("a hold release names its hold, rule, kind, key and reason as strings")
        text: dict[str, str] = {k: str(v) for k, v in texts.items()}
        entries = meta.get("entries")
        if not isinstance(entries, list) or len(entries) != len(bodies) or not all(isinstance(e, str) for e in entries):
            raise ValueError("a hold release names one stream entry per event")
        depth = meta.get("depth")
        events = [event_from_mapping(body, f"events[{i}]") for i, body in enumerate(bodies)]
        return cls(text["hold"], text["rule"], text["kind"], text["key"], text["reason"],
                   depth if isinstance(depth, int) and depth >= 0 else 0, entries, events)


def run_request(project: Project, released: Released) -> RunRequest:
    """The run `released` asks for; RuleError when its rule is no longer in the project."""
    rule = next((r for r in project.rules if r.name == released.rule), None)
    if rule is None or rule.workflow not in project.workflows:
        raise RuleError(f"hold {released.hold}: rule {released.rule!r} is no longer in the project")
    spec = project.workflows[rule.workflow].spec
    chosen = released.events[-1] if released.kind == "debounce" else released.events[0]
    views = [event_view(e) for e in released.events]
    view = views[-1] if released.kind == "debounce" else views[0]
    if released.kind == "throttle":
        run_id = derive_run_id(rule.name, chosen.source, chosen.id)
    else:
        run_id = hold_run_id(rule.name, released.hold)
    flow = {"control": released.kind, "hold": released.hold, "key": released.key, "reason": released.reason,
            "events": len(views)}
    held = [{"entry_id": e, "event": v} for e, v in zip(released.entries, views, strict=True)]
    ref, trace = EventRef(chosen.id, chosen.source, chosen.type), of_event(chosen)
    common: dict[str, Any] = {"trace": trace, "depth": released.depth, "flow": flow, "events": held,
                              "ruleset": project.ruleset}
    context = {"event": view, "data": view.get("data"), "events": views}
    try:
        params = spec.bind_params(rule.params.render(context))
        claim, note = (rule.controls.claim(rule.name, spec.name, spec.concurrency, context) if rule.controls
                       else (None, None))
    except (RuleError, WorkflowError) as exc:
        return RunRequest(run_id, rule.name, spec, ref, None, f"rule {rule.name}: {exc}", **common)
    return RunRequest(run_id, rule.name, spec, ref, params, event_data=chosen.data, claim=claim, note=note, **common)


class Host(Protocol):
    keys: Keys

    @property
    def client(self) -> Any: ...

    @property
    def settings(self) -> Settings: ...

    def now(self) -> Any: ...


class ReleaseHolds:
    """The maintenance chore that releases due holds (see the module docstring)."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._script = lua.register(host.client, "flow_release")

    def every_s(self, settings: Settings) -> float:
        return settings.flow_release_interval_s

    def run(self, now_s: float, force: bool) -> None:
        self.release()

    def release(self) -> int:
        """Release every hold due now (by the engine's clock); the number released."""
        keys = self._host.keys
        total = 0
        for _ in range(CALLS_PER_TURN):
            now_ms = int(self._host.now().timestamp() * 1000)
            released = int(self._script(keys=[keys.flow_due, keys.results, keys.metric(FLOW_RELEASES.name)],
                                        args=[now_ms, PER_CALL, keys.flow_hold_prefix]))
            total += released
            if released < PER_CALL:
                break
        if total:
            log.info("flow control: %d hold(s) released", total)
        return total
