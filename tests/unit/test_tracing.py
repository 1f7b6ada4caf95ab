"""Trace context, without Redis: W3C parsing of untrusted values, where a context is taken from (event,
HTTP header, job payload, run record), how it rides on emitted events, and when export is asked for."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from executors.attempt import Attempt, LogBuffer
from executors.catalog import ForgedJob, JobPayload
from executors.kinds.shell import command_env
from orchestrator.context import TaskContext
from orchestrator.events.causation import caused_by, with_cause
from orchestrator.events.envelope import Event
from orchestrator.events.http import BATCH, STRUCTURED, parse_http_events
from orchestrator.tracing import TraceContext, adopt_header, from_record, of_event, parse, run_span_id, wanted
from orchestrator.workflows.runs import EventRef, Run
from orchestrator.workflows.spec import WorkflowSpec
from orchestrator.workflows.work import Dispatch
from triggers.webhooks.config import HookConfig
from triggers.webhooks.mapping import build_event
from triggers.webhooks.verify import Verified

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"
OTHER = f"00-{'a' * 32}-{'b' * 16}-00"
EVENT = {"specversion": "1.0", "id": "e-1", "source": "/shop", "type": "order.created", "data": {}}
CE_HEADERS = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "/shop", "ce-type": "order.created"}


# -- parsing -----------------------------------------------------------------------------------------


def test_a_valid_traceparent_is_read_with_its_tracestate() -> None:
    context = parse(VALID, "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7")

    assert context == TraceContext(TRACE, SPAN, "01", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    assert context.traceparent == VALID
    assert context.extensions() == {"traceparent": VALID, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}


@pytest.mark.parametrize("value", [
    VALID.upper(), f"ff-{TRACE}-{SPAN}-01", f"00-{TRACE}-{SPAN}-01-extra", f"00-{'0' * 32}-{SPAN}-01",
    f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE[:-1]}-{SPAN}-01", f"00-{TRACE}-{SPAN}-1", f" {VALID}", f"{VALID}\n",
    f"00_{TRACE}_{SPAN}_01", "", "garbage", 1, True, None, ["x"], VALID + "-" * 500,
])
def test_anything_but_a_valid_traceparent_is_ignored(value: Any) -> None:
    assert parse(value) is None


def test_a_later_version_is_read_for_the_fields_this_version_knows() -> None:
    assert parse(f"01-{TRACE}-{SPAN}-ff-more-fields") == TraceContext(TRACE, SPAN, "03")


@pytest.mark.parametrize("state", [
    "Upper=1", "a=1,a=2", ",".join(f"k{i}=v" for i in range(33)), "k=" + "v" * 600, "k=v=", "=v", "k=", 5,
])
def test_an_invalid_tracestate_is_dropped_and_the_traceparent_kept(state: Any) -> None:
    assert parse(VALID, state) == TraceContext(TRACE, SPAN, "01", None)


def test_a_multi_tenant_tracestate_key_is_valid() -> None:
    assert parse(VALID, "tenant@vendor=value,,x=1") == TraceContext(TRACE, SPAN, "01", "tenant@vendor=value,x=1")


def test_a_run_span_id_is_derived_from_the_run_id() -> None:
    assert run_span_id("r-1") == run_span_id("r-1") != run_span_id("r-2")
    assert len(run_span_id("r-1")) == 16 and int(run_span_id("r-1"), 16) > 0


def test_a_run_record_is_read_back_strictly() -> None:
    stored = TraceContext(TRACE, SPAN, "01", "k=v", parent="1" * 16)

    assert from_record(stored.record()) == stored
    assert from_record({"traceparent": VALID, "parent": "not-a-span"}) == TraceContext(TRACE, SPAN)
    assert from_record({"traceparent": VALID, "parent": "0" * 16}) == TraceContext(TRACE, SPAN)
    assert from_record({"traceparent": "x", "parent": "1" * 16}) is None
    assert from_record("00-…") is None and from_record(None) is None


# -- where a context comes from ------------------------------------------------------------------------


def test_an_event_carries_its_context_in_the_distributed_tracing_attributes() -> None:
    event = Event.new("t", source="/s", extensions={"traceparent": VALID, "tracestate": "k=v"})

    assert of_event(event) == TraceContext(TRACE, SPAN, "01", "k=v")
    assert of_event(Event.new("t", source="/s", extensions={"traceparent": 7})) is None
    assert of_event(Event.new("t", source="/s")) is None


def test_the_http_header_is_the_context_of_events_without_a_valid_one_of_their_own() -> None:
    own = Event.new("t", source="/s", extensions={"traceparent": OTHER})
    bad = Event.new("t", source="/s", extensions={"traceparent": "bad", "tracestate": "k=v", "x": 1})
    none = Event.new("t", source="/s")

    kept, fixed, given = adopt_header([own, bad, none], {"traceparent": f" {VALID} ", "tracestate": "h=1"})

    assert kept is own
    assert fixed.extensions == {"x": 1, "traceparent": VALID, "tracestate": "h=1"}
    assert given.extensions == {"traceparent": VALID, "tracestate": "h=1"}
    assert adopt_header([none], {"traceparent": "bad"}) == [none]


def test_post_events_takes_the_traceparent_header_in_binary_and_structured_mode() -> None:
    (binary,) = parse_http_events("application/json", {**CE_HEADERS, "traceparent": VALID}, b"{}")
    (structured,) = parse_http_events(STRUCTURED, {"traceparent": VALID}, json.dumps(EVENT).encode())
    (own,) = parse_http_events("application/json", {**CE_HEADERS, "ce-traceparent": OTHER, "traceparent": VALID},
                               b"{}")
    batch = parse_http_events(BATCH, {"traceparent": VALID},
                              json.dumps([EVENT, {**EVENT, "id": "e-2", "traceparent": OTHER}]).encode())

    assert of_event(binary) == of_event(structured) == TraceContext(TRACE, SPAN)
    assert of_event(own) == parse(OTHER), "the event's own attribute wins over the request's header"
    assert [of_event(e) for e in batch] == [parse(VALID), parse(OTHER)]


def test_a_malformed_traceparent_never_refuses_an_event() -> None:
    (event,) = parse_http_events(STRUCTURED, {"traceparent": "junk"},
                                 json.dumps({**EVENT, "traceparent": "junk", "tracestate": "?"}).encode())

    assert event.extensions == {"traceparent": "junk", "tracestate": "?"}, "kept as sent"
    assert of_event(event) is None


def test_a_webhook_takes_the_traceparent_header() -> None:
    config = HookConfig.model_validate({"name": "h", "verify": "none"}, context={"project_root": Path("/srv/p")})
    now = datetime(2026, 1, 2, tzinfo=UTC)

    event = build_event(config, {"traceparent": VALID}, {"type": "x"}, b"{}", Verified(), now)
    plain = build_event(config, {"traceparent": "junk"}, {"type": "x"}, b"{}", Verified(), now)

    assert isinstance(event, Event) and isinstance(plain, Event)
    assert of_event(event) == TraceContext(TRACE, SPAN)
    assert "traceparent" not in plain.extensions


# -- where it goes -----------------------------------------------------------------------------------------


def test_events_emitted_by_a_task_carry_its_trace_unless_they_set_their_own() -> None:
    with caused_by("run-1", "charge", TraceContext(TRACE, SPAN, "01", "k=v")):
        plain = with_cause({})
        own = with_cause({"extensions": {"traceparent": OTHER}})
        explicit_cause = with_cause({"orchrun": "mine"})
    with caused_by("run-1", "charge"):
        untraced = with_cause({})

    assert plain == {"orchrun": "run-1", "orchtask": "charge", "traceparent": VALID, "tracestate": "k=v"}
    assert own == {"orchrun": "run-1", "orchtask": "charge"}
    assert explicit_cause == {"traceparent": VALID, "tracestate": "k=v"}
    assert untraced == {"orchrun": "run-1", "orchtask": "charge"}


def dispatch(trace: TraceContext | None) -> Dispatch:
    return Dispatch(run_id="r", workflow="w", version="v", node="n", task="n", attempt=1, queue="q", job_id="j",
                    args=[], trace=trace)


def test_a_job_carries_its_runs_context_and_a_worker_reads_it_strictly() -> None:
    payload = dispatch(TraceContext(TRACE, SPAN, "01", "k=v", parent="1" * 16)).payload()

    assert payload["traceparent"] == VALID and payload["tracestate"] == "k=v" and "parent" not in payload
    assert "traceparent" not in dispatch(None).payload()
    assert JobPayload.parse(payload).trace == TraceContext(TRACE, SPAN, "01", "k=v")
    assert JobPayload.parse({**payload, "traceparent": ["junk"]}).trace is None, "ignored, never a refusal"
    with pytest.raises(ForgedJob, match="unexpected field"):
        JobPayload.parse({**payload, "command": "rm -rf /"})


def test_a_shell_command_gets_the_attempts_context_as_traceparent_and_tracestate() -> None:
    def env_of(trace: TraceContext | None) -> dict[str, str]:
        ctx = TaskContext(run_id="r", workflow="w", node="n", key="r:n", trace=trace)
        attempt = Attempt(ctx=ctx, kind="shell", args=[], kwargs={}, timeout_s=5.0, logs=LogBuffer())
        return command_env({"PATH": "/bin", "TRACEPARENT": OTHER, "TRACESTATE": "worker=1"}, attempt, {})

    traced, untraced = env_of(TraceContext(TRACE, SPAN, "01", "k=v")), env_of(None)

    assert (traced["TRACEPARENT"], traced["TRACESTATE"]) == (VALID, "k=v")
    assert "TRACEPARENT" not in untraced and "TRACESTATE" not in untraced, "never the worker's own"


def test_a_run_keeps_its_context_in_its_record() -> None:
    spec = WorkflowSpec.from_dict({"name": "w", "nodes": []})
    run = Run(id="r", workflow="w", rule="rule", event=EventRef("e", "/s", "t"), params={}, spec=spec,
              created_at=datetime(2026, 1, 2, tzinfo=UTC), trace=TraceContext(TRACE, SPAN, parent="1" * 16))

    fields = {k.encode(): v for k, v in run.to_fields(spec=True).items()}
    assert Run.from_fields(fields).trace == run.trace
    meta = json.loads(fields[b"meta"])
    meta["trace"] = {"traceparent": "forged"}
    assert Run.from_fields({**fields, b"meta": json.dumps(meta).encode()}).trace is None


# -- export: asked for by the OTEL_* variables --------------------------------------------------------------


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, False),
    ({"OTEL_SERVICE_NAME": "orch"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
])
def test_export_is_on_only_when_the_otel_variables_ask_for_it(environ: dict[str, str], expected: bool) -> None:
    assert wanted(environ) is expected
