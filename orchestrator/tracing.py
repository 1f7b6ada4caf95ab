"""Traces: W3C trace context carried from an event to its runs, their tasks and the events those emit;
OpenTelemetry spans for each step when the `OTEL_*` variables ask for them.

Propagation (always; it costs a dictionary lookup per event):

    event     `traceparent` / `tracestate`: the CloudEvents distributed-tracing extension attributes, or
              the HTTP `traceparent` header of POST /events and /hooks/* for an event without a valid one
    run       the run record's `trace`: the context its tasks are children of
    task      the job payload's `traceparent`; the task context's `trace`; events the task emits (and
              the `TRACEPARENT` variable of shell tasks) carry it, like orchrun / orchtask (causation.py)

Every value is untrusted and parsed strictly (`parse`): a malformed one is ignored, never an error, so
an event is never refused or lost for its trace context. The envelope keeps such attributes as sent.
The parsing and the run contexts live in tracecontext.py and are re-exported here; this module holds the
export.

Export (only after `configure(role)` found `OTEL_TRACES_EXPORTER` or `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`;
otherwise the SDK is never imported and every hook is behind one check of `active`):

    ingest <type>    producer   publishing one event; the stored event carries this span's context
    match <type>     consumer   the engine evaluating the rules for one event
    run <workflow>   internal   a run from creation to end, sent at its end with explicit times; its span
                                id is derived from the run id (`run_span_id`): attempts name it earlier
    task <wf>.<node> consumer   one task attempt in the worker, child of its run's span
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from .tracecontext import (
    TRACEPARENT,
    TRACESTATE,
    TraceContext,
    adopt_header,
    from_record,
    of_event,
    parse,
    rerun_context,
    run_context,
    run_span_id,
    stamp,
)

if TYPE_CHECKING:
    from .events.envelope import Event
    from .events.publish import Published
    from .workflows.advance import Change
    from .workflows.lifecycle import RunRequest
    from .workflows.runs import Run

__all__ = ["TRACEPARENT", "TRACESTATE", "TraceContext", "active", "adopt_header", "configure", "disable", "flush",
           "from_record", "ingesting", "match", "of_event", "parse", "rerun_context", "run_context", "run_span_id",
           "runs_ended", "task_attempt", "wanted"]

log = logging.getLogger(__name__)

active = False  # True once `configure` set up export: the one thing every hook checks
_tracer: Any = None
_provider: Any = None
_forced_span: ContextVar[int | None] = ContextVar("orch_forced_span_id", default=None)

T = TypeVar("T")
_Out = list["Published"]


# -- export: configuration ----------------------------------------------------------------------------


def _exporter_names(environ: Mapping[str, str]) -> list[str] | None:
    raw = environ.get("OTEL_TRACES_EXPORTER", "")
    if not raw.strip():
        return None
    return [n for n in (part.strip().lower() for part in raw.split(",")) if n and n != "none"]


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the `OTEL_*` variables in `environ` ask for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    names = _exporter_names(environ)
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return bool(names) if names is not None else any(environ.get(name, "").strip() for name in endpoints)


def configure(role: str, *, exporter: Any = None) -> bool:
    """Export spans as the `OTEL_*` environment says (to `exporter` instead, in tests); True when on.

    Called once by each process entry point (api, engine, worker, triggers), `role` naming it in the
    default service name `orch-<role>` (`OTEL_SERVICE_NAME` overrides it). Without configuration, or
    without the SDK installed (`pip install 'orch[otel]'`, which then logs a warning), nothing changes.
    """
    global active, _tracer, _provider
    if exporter is None and not wanted(os.environ):
        return False
    try:
        provider = _new_provider(role, exporter)
    except ImportError as exc:
        log.warning("OTEL_* variables ask for traces, but OpenTelemetry cannot be loaded (%s): "
                    "pip install 'orch[otel]'; continuing without traces", exc)
        return False
    from . import __version__

    _provider, _tracer = provider, provider.get_tracer("orch", __version__)
    active = True
    log.info("traces: exporting spans as %s", "given" if exporter is not None else "the OTEL_* variables say")
    return True


def _new_provider(role: str, exporter: Any) -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class Ids(RandomIdGenerator):  # random ids, except the span id `_forced_span` asks for (a run's span)
        def generate_span_id(self) -> int:
            forced = _forced_span.get()
            return forced if forced is not None else super().generate_span_id()

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": f"orch-{role}"}))
    provider = TracerProvider(resource=resource.merge(Resource({"orch.role": role})), id_generator=Ids())
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        for span_exporter in _exporters(os.environ):
            provider.add_span_processor(BatchSpanProcessor(span_exporter))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)  # tasks' own instrumentation nests under their attempt's span
    return provider


def _exporters(environ: Mapping[str, str]) -> Iterator[Any]:
    for name in _exporter_names(environ) or ["otlp"]:
        if name == "otlp":
            protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            kind = "grpc" if (protocol or "").strip() == "grpc" else "http"
            module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{kind}.trace_exporter")
            yield module.OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            yield ConsoleSpanExporter()
        else:
            log.warning("OTEL_TRACES_EXPORTER=%s: orch exports with otlp or console only; %s ignored", name, name)


def flush() -> None:
    """Send the spans not yet exported (a forked task's process does before it exits)."""
    if _provider is not None:
        _provider.force_flush()


def disable() -> None:
    """Stop exporting (flushing what is left); the hooks go back to doing nothing."""
    global active, _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    active, _tracer, _provider = False, None, None


# -- export: spans ------------------------------------------------------------------------------------


def _parent(context: TraceContext | None) -> Any:
    """An OpenTelemetry Context whose current span is `context` (remote), or None: a root span."""
    if context is None:
        return None
    from opentelemetry import trace

    state = trace.TraceState.from_header([context.state]) if context.state else None
    remote = trace.SpanContext(int(context.trace_id, 16), int(context.span_id, 16), is_remote=True,
                               trace_flags=trace.TraceFlags(int(context.flags, 16)), trace_state=state)
    return trace.set_span_in_context(trace.NonRecordingSpan(remote))


def _context_of(span: Any) -> TraceContext:
    ctx = span.get_span_context()
    return TraceContext(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", f"{int(ctx.trace_flags) & 0xff:02x}",
                        ctx.trace_state.to_header() or None)


def _event_attributes(event: Event) -> dict[str, str]:
    return {"orch.event.id": event.id, "orch.event.type": event.type, "orch.event.source": event.source}


def _failed(span: Any, exc: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
    span.set_attribute("error.type", str(getattr(exc, "error_type", None) or type(exc).__name__))


@contextmanager
def ingesting(events: Sequence[Event], trigger: str) -> Iterator[tuple[list[Event], Callable[[_Out], _Out]]]:
    """Publish `events` in the block, each in an `ingest` span ended with it: yields the events stamped
    with their span's context (to publish instead), and `done`, which notes duplicates in the outcome."""
    from opentelemetry.trace import SpanKind

    spans = [_tracer.start_span(f"ingest {event.type}", context=_parent(of_event(event)), kind=SpanKind.PRODUCER,
                                attributes={**_event_attributes(event), "orch.trigger": trigger}) for event in events]

    def done(published: _Out) -> _Out:
        for span, outcome in zip(spans, published, strict=True):
            span.set_attribute("orch.event.duplicate", outcome.duplicate)
        return published

    try:
        yield [stamp(event, _context_of(span)) for event, span in zip(events, spans, strict=True)], done
    except BaseException as exc:
        for span in spans:
            _failed(span, exc)
        raise
    finally:
        for span in spans:
            span.end()


def match(event: Event, plan: Callable[[], tuple[list[RunRequest], T]]) -> tuple[list[RunRequest], T]:
    """Run the engine's `plan` of `event` in a `match` span; the runs it asks for become its children."""
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(f"match {event.type}", context=_parent(of_event(event)),
                                       kind=SpanKind.CONSUMER, attributes=_event_attributes(event)) as span:
        requests, outcome = plan()
        here = _context_of(span)
        span.set_attribute("orch.rules.matched", sorted({r.rule for r in requests}))
        span.set_attribute("orch.runs", len(requests))
        return [replace(r, trace=run_context(here, r.run_id)) for r in requests], outcome


def runs_ended(changes: Iterable[Change]) -> None:
    """Emit the span of every run that ended in a committed batch (once: not again after a retry)."""
    for change in changes:
        run, context = change.run, change.run.trace
        if (change.finished and context is not None and context.parent is not None
                and context.span_id == run_span_id(run.id)
                and not any(step.get("action") == "retry" for step in run.steering)):
            _run_span(run, context, context.parent)


def _run_span(run: Run, context: TraceContext, parent: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    token = _forced_span.set(int(context.span_id, 16))
    try:
        span = _tracer.start_span(f"run {run.workflow}", context=_parent(replace(context, span_id=parent)),
                                  start_time=int(run.created_at.timestamp() * 1e9), attributes={
                                      "orch.run.id": run.id, "orch.workflow": run.workflow, "orch.rule": run.rule,
                                      "orch.run.status": str(run.status), "orch.event.id": run.event.id,
                                      "orch.event.type": run.event.type})
    finally:
        _forced_span.reset(token)
    if str(run.status) == "failed":
        span.set_status(Status(StatusCode.ERROR, (run.error or "failed")[:500]))
    span.end(end_time=int((run.finished_at or run.created_at).timestamp() * 1e9))


@contextmanager
def task_attempt(parent: TraceContext | None, *, run_id: str, workflow: str, node: str, attempt: int,
                 worker: str) -> Iterator[TraceContext]:
    """The block runs one task attempt in a `task` span (current, so a task's own spans nest under it),
    a child of `parent` (its run's span); yields the span's context, which the task's events carry."""
    from opentelemetry.trace import SpanKind

    base = node.split("[", 1)[0]  # item i of a mapped task `n[i]` is a span of task n
    attributes = {"orch.run.id": run_id, "orch.workflow": workflow, "orch.task.node": node,
                  "orch.task.attempt": attempt, "orch.worker": worker}
    with _tracer.start_as_current_span(f"task {workflow}.{base}", context=_parent(parent), kind=SpanKind.CONSUMER,
                                       attributes=attributes, record_exception=False,
                                       set_status_on_exception=False) as span:
        try:
            yield _context_of(span)
        except BaseException as exc:  # TaskTimeout and TaskCancelled too
            _failed(span, exc)
            raise
