"""Traces with a real Redis, engine and worker in this process: the spans orch exports, caught by the
OpenTelemetry SDK's in-memory exporter, link an event's trace to its ingest, match, run and task
attempts, and to the events its tasks emit; without configuration nothing of OpenTelemetry is loaded."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from orchestrator import tracing
from orchestrator.cli.wiring import load_project
from orchestrator.events.recent import recent_events
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.steer import request
from orchestrator.workflows.runs import RunStatus

from ..helpers import ROOT
from ..inproc import Stack
from ..projects import make_project

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = "00f067aa0ba902b7"
INCOMING = f"00-{TRACE}-{CALLER}-01"

RULES = """
    rules:
      - name: note-orders
        type: order.placed
        workflow: note_order
        params:
          order_id: "{{ event.data.order_id }}"
"""
WORKFLOWS = {"notes": """
    from orchestrator import task, workflow
    from orchestrator.context import current


    @task
    def note(order_id: str) -> str:
        ctx = current()
        return ctx.emit("order.noted", {"order_id": order_id}, id=f"{ctx.key}:noted")


    @task
    def confirm(order_id: str, noted: str) -> str:
        if order_id == "bad":
            raise ValueError("a bad order")
        return f"{order_id}: {noted}"


    @workflow
    def note_order(order_id: str):
        confirm(order_id, note(order_id))
"""}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    assert tracing.configure("test", exporter=spans)
    yield spans
    tracing.disable()


@pytest.fixture
def stack(r: redis.Redis, redis_url: str, tmp_path: Path) -> Stack:
    project = load_project(make_project(tmp_path, rules=RULES, workflows=WORKFLOWS))
    return Stack(r, Settings(redis_url=redis_url, project=tmp_path), project)


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {[s.name for s in spans]}"
    return found[0]


def _parent_id(span: ReadableSpan) -> str | None:
    return _hex(span.parent.span_id, 16) if span.parent else None


def _span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return _hex(span.context.span_id, 16)


def _event(r: redis.Redis, type_: str) -> dict[str, Any]:
    (found,) = recent_events(r, Keys("orch"), type_glob=type_)
    return found


def test_an_events_trace_links_ingest_match_run_task_attempts_and_emitted_events(
        exporter: InMemorySpanExporter, stack: Stack, r: redis.Redis) -> None:
    event_id = stack.emit("order.placed", {"order_id": "A-1"}, source="/shop", extensions={"traceparent": INCOMING})
    stack.drain()

    run = stack.run("note-orders", "/shop", event_id)
    assert run.status is RunStatus.SUCCEEDED
    spans = list(exporter.get_finished_spans())
    assert {_hex(s.context.trace_id, 32) for s in spans if s.context} == {TRACE}, "one trace, the caller's"
    ingest, matched = _one(spans, "ingest order.placed"), _one(spans, "match order.placed")
    run_span, note, confirm = _one(spans, "run note_order"), _one(spans, "task note_order.note"), \
        _one(spans, "task note_order.confirm")
    assert _parent_id(ingest) == CALLER
    assert _event(r, "order.placed")["traceparent"] == f"00-{TRACE}-{_span_id(ingest)}-01", "the stored event"
    assert _parent_id(matched) == _span_id(ingest)
    assert (_span_id(run_span), _parent_id(run_span)) == (tracing.run_span_id(run.id), _span_id(matched))
    assert run.finished_at is not None and run_span.end_time == int(run.finished_at.timestamp() * 1e9)
    assert run_span.start_time == int(run.created_at.timestamp() * 1e9)
    assert _parent_id(note) == _parent_id(confirm) == _span_id(run_span), "attempts are children of the run"
    assert note.attributes is not None and note.attributes["orch.run.id"] == run.id
    assert run.trace is not None and run.trace.traceparent == f"00-{TRACE}-{_span_id(run_span)}-01"

    emitted = _one(spans, "ingest order.noted")
    assert _parent_id(emitted) == _span_id(note), "an event a task emits is a child of its attempt"
    noted = _event(r, "order.noted")
    assert noted["traceparent"] == f"00-{TRACE}-{_span_id(emitted)}-01"
    assert (noted["orchrun"], noted["orchtask"]) == (run.id, "note")


def test_a_malformed_traceparent_starts_a_new_trace_and_failures_mark_their_spans(
        exporter: InMemorySpanExporter, stack: Stack) -> None:
    event_id = stack.emit("order.placed", {"order_id": "bad"}, source="/shop", extensions={"traceparent": "0-garbage"})
    stack.drain()

    run = stack.run("note-orders", "/shop", event_id)
    assert run.status is RunStatus.FAILED
    spans = list(exporter.get_finished_spans())
    ingest, run_span = _one(spans, "ingest order.placed"), _one(spans, "run note_order")
    confirm = _one(spans, "task note_order.confirm")
    assert ingest.parent is None, "a malformed traceparent is ignored, and the event published"
    assert {s.context.trace_id for s in spans if s.context} == {ingest.context.trace_id}  # type: ignore[union-attr]
    assert confirm.status.status_code is StatusCode.ERROR
    assert confirm.attributes is not None and confirm.attributes["error.type"] == "ValueError"
    assert run_span.status.status_code is StatusCode.ERROR
    assert run_span.status.description == run.error


def test_a_retry_joins_the_runs_span_and_a_rerun_is_a_child_of_it(exporter: InMemorySpanExporter,
                                                                   stack: Stack, r: redis.Redis) -> None:
    event_id = stack.emit("order.placed", {"order_id": "bad"}, source="/shop", extensions={"traceparent": INCOMING})
    stack.drain()
    run = stack.run("note-orders", "/shop", event_id)
    request(r, Keys("orch"), stack.engine.store, "retry", run.id, by="test")
    stack.drain()
    rerun = request(r, Keys("orch"), stack.engine.store, "rerun", run.id, by="test").new_run
    stack.drain()

    spans = list(exporter.get_finished_spans())
    first = tracing.run_span_id(run.id)
    assert rerun is not None and {_span_id(s): _parent_id(s) for s in spans if s.name == "run note_order"} == {
        first: _span_id(_one(spans, "match order.placed")), tracing.run_span_id(rerun): first}, \
        "the retried run's span is sent once; the rerun's is its child"
    confirms = [s for s in spans if s.name == "task note_order.confirm"]
    assert sorted(_parent_id(s) or "" for s in confirms) == sorted([first, first, tracing.run_span_id(rerun)])
    assert {_hex(s.context.trace_id, 32) for s in spans if s.context} == {TRACE}


def test_without_configuration_orch_never_imports_opentelemetry(redis_url: str, tmp_path: Path) -> None:
    """In a fresh interpreter where OpenTelemetry cannot be imported (as without `orch[otel]`), orch runs and
    carries trace context; only `configure` with an OTEL_* variable set tries to import it, and gives up."""
    make_project(tmp_path, rules=RULES, workflows=WORKFLOWS)
    script = textwrap.dedent(f"""
        import logging, os, sys, traceback

        tried = []  # (module, the file that imported it)

        class NoOpenTelemetry:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] != "opentelemetry":
                    return None
                frames = [f.filename for f in traceback.extract_stack() if "importlib" not in f.filename
                          and not f.filename.startswith("<")]
                tried.append((name, frames[-1]))
                raise ModuleNotFoundError(f"No module named {{name!r}}")

        sys.meta_path.insert(0, NoOpenTelemetry())

        import redis
        from orchestrator import tracing
        from orchestrator.cli.wiring import load_project
        from orchestrator.events.recent import recent_events
        from orchestrator.settings import Settings
        from orchestrator.state.keys import Keys
        from tests.inproc import Stack

        def by_orch():
            return [(name, f) for name, f in tried if f.startswith({str(ROOT)!r}) and "/.venv/" not in f]

        assert not tracing.configure("test"), "no OTEL_* variable: export stays off"
        r = redis.Redis.from_url({redis_url!r})
        stack = Stack(r, Settings(redis_url={redis_url!r}, project={str(tmp_path)!r}), load_project({str(tmp_path)!r}))
        event_id = stack.emit("order.placed", {{"order_id": "A-3"}}, source="/shop",
                              extensions={{"traceparent": {INCOMING!r}}})
        stack.drain()
        assert str(stack.run("note-orders", "/shop", event_id).status) == "succeeded"
        (noted,) = recent_events(r, Keys("orch"), type_glob="order.noted")
        assert by_orch() == [], by_orch()

        logging.basicConfig(level=logging.WARNING, force=True)
        os.environ["OTEL_TRACES_EXPORTER"] = "otlp"
        assert not tracing.configure("test"), "asked for, but not installed: a warning, and no traces"
        assert not tracing.active
        print(noted["traceparent"])
        print(sorted({{f.removeprefix({str(ROOT)!r}) for _, f in by_orch()}}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ORCH_"))}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    traceparent, importers = result.stdout.splitlines()[-2:]
    assert traceparent == INCOMING, "the trace context is still carried, from event to event"
    assert importers == "['/orchestrator/tracing.py']", "only configure, once OTEL_* asks, imports it"
    assert "OpenTelemetry cannot be loaded" in result.stderr and "orch[otel]" in result.stderr
