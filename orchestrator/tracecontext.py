"""W3C trace context: parsing the untrusted `traceparent` / `tracestate` values an event, a request, a
run's record or a job carries, and deriving the contexts of runs from them (what tracing.py propagates).

Kept apart from tracing.py, which holds the OpenTelemetry export (configuration and spans): this part
is pure, runs for every event whether spans are exported or not, and changes with the W3C format only.
`orchestrator.tracing` re-exports these names, and callers import them from there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .events.envelope import Event

__all__ = ["MAX_MEMBERS", "MAX_TRACESTATE", "TRACEPARENT", "TRACESTATE", "TraceContext", "adopt_header",
           "from_record", "of_event", "parse", "rerun_context", "run_context", "run_span_id", "stamp"]

TRACEPARENT, TRACESTATE = "traceparent", "tracestate"
_TRACEPARENT = re.compile(r"(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})"
                          r"-(?P<flags>[0-9a-f]{2})(?P<rest>-[\x21-\x7e]*)?")
_KEY = r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
_MEMBER = re.compile(_KEY + r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
MAX_TRACESTATE = 512  # what W3C asks propagators to keep at least; longer values are dropped, not cut
MAX_MEMBERS = 32


@dataclass(frozen=True)
class TraceContext:
    """A W3C trace context: ids as lowercase hex, `flags` as two hex digits, `state` the tracestate.

    `parent` is set on a run's record only, by an engine that exports spans: the span (match) that the
    run's own span is a child of.
    """

    trace_id: str
    span_id: str
    flags: str = "01"
    state: str | None = None
    parent: str | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def extensions(self) -> dict[str, str]:
        """As CloudEvents extension attributes (and job payload fields)."""
        return {TRACEPARENT: self.traceparent, **({TRACESTATE: self.state} if self.state else {})}

    def record(self) -> dict[str, str]:
        """As kept in a run's record (`from_record` reads it back)."""
        return {**self.extensions(), **({"parent": self.parent} if self.parent else {})}


def parse(traceparent: object, tracestate: object = None) -> TraceContext | None:
    """The context in a `traceparent` (and `tracestate`) value, or None when it is not a valid one.

    W3C Trace Context, strictly: lowercase hex, version ff refused, version 00 exactly 55 characters,
    ids not all zeros. A tracestate that is not valid is dropped and the traceparent kept.
    """
    if not isinstance(traceparent, str) or len(traceparent) > 512:
        return None
    found = _TRACEPARENT.fullmatch(traceparent)
    if found is None or found["version"] == "ff" or (found["version"] == "00" and found["rest"]):
        return None
    trace_id, span_id, flags = found["trace"], found["span"], found["flags"]
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    if found["version"] != "00":  # a later version: its known fields, re-sent as version 00
        flags = f"{int(flags, 16) & 0x03:02x}"
    return TraceContext(trace_id, span_id, flags, _tracestate(tracestate))


def _tracestate(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TRACESTATE:
        return None
    members = [m for m in (part.strip(" \t") for part in value.split(",")) if m]
    keys = [m.split("=", 1)[0] for m in members]
    if len(members) > MAX_MEMBERS or len(set(keys)) != len(keys) or not all(_MEMBER.fullmatch(m) for m in members):
        return None
    return ",".join(members)


def of_event(event: Event) -> TraceContext | None:
    """The trace context an event carries (its distributed-tracing extension attributes), if valid."""
    value = event.extensions.get(TRACEPARENT)
    return None if value is None else parse(value, event.extensions.get(TRACESTATE))


def adopt_header(events: list[Event], headers: Mapping[str, str]) -> list[Event]:
    """The events of one HTTP request, each given the trace context of the request's `traceparent` (and
    `tracestate`) header unless it carries a valid one of its own."""
    value = headers.get(TRACEPARENT)
    context = None if value is None else parse(value.strip(" \t"), headers.get(TRACESTATE))
    if context is None:
        return events
    return [event if of_event(event) else stamp(event, context) for event in events]


def stamp(event: Event, context: TraceContext) -> Event:
    """`event` carrying `context` as its trace context, instead of any it had."""
    kept = {k: v for k, v in event.extensions.items() if k not in (TRACEPARENT, TRACESTATE)}
    return event.model_copy(update={"extensions": {**kept, **context.extensions()}})


def from_record(value: object) -> TraceContext | None:
    """A run record's `trace` (read back from Redis, so untrusted), or None when it is not a valid one."""
    if not isinstance(value, dict):
        return None
    context = parse(value.get(TRACEPARENT), value.get(TRACESTATE))
    parent = value.get("parent")
    if context is None or not isinstance(parent, str) or not _SPAN_ID.fullmatch(parent) or parent == "0" * 16:
        return context
    return replace(context, parent=parent)


def run_span_id(run_id: str) -> str:
    """The span id of a run's span: derived from the run id, so every process knows it from the start."""
    digest = hashlib.blake2b(f"orch-run-span\x00{run_id}".encode(), digest_size=8).hexdigest()
    return digest if digest != "0" * 16 else "0" * 15 + "1"


def run_context(parent: TraceContext, run_id: str) -> TraceContext:
    """The context of run `run_id` (its span's), the span being a child of `parent`."""
    return replace(parent, span_id=run_span_id(run_id), parent=parent.span_id)


def rerun_context(old: TraceContext | None, run_id: str) -> TraceContext | None:
    """A rerun's context: a child of the old run's span where it has one, else the old run's context."""
    return run_context(old, run_id) if old is not None and old.parent is not None else old
