"""Traces end to end: real `orch api`, `orch engine` and `orch worker` processes, configured only by the
standard OTEL_* variables, export their spans over OTLP/HTTP to a collector (a small OTLP receiver here,
decoding what the real exporter sends); an event POSTed with a `traceparent` header is one trace from the
API's ingest to the engine's match and run, the worker's task attempts and the events those emit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from orchestrator.tracing import run_span_id

from ..helpers import free_port, wait_for
from ..projects import make_project
from .conftest import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

TRACE, CALLER = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
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
        return f"{order_id}: {noted}"


    @workflow
    def note_order(order_id: str):
        confirm(order_id, note(order_id))
"""}


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent: str | None


class Collector(ThreadingHTTPServer):
    """Accepts OTLP/HTTP protobuf exports on /v1/traces and keeps the spans."""

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Receive)
        self.spans: list[Span] = []

    def named(self, name: str) -> list[Span]:
        return [s for s in list(self.spans) if s.name == name]


class _Receive(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
            for scope in resource.scope_spans:
                self.server.spans += [Span(service, s.name, s.trace_id.hex(), s.span_id.hex(),
                                           s.parent_span_id.hex() or None) for s in scope.spans]
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    server = Collector(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[Stack]:
    project = make_project(tmp_path_factory.mktemp("project"), rules=RULES, workflows=WORKFLOWS)
    running = start_stack(tmp_path_factory.mktemp("logs"), project,
                          OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_port}",
                          OTEL_BSP_SCHEDULE_DELAY="50")
    yield running
    stop_stack(running)


def _one(collector: Collector, name: str) -> Span:
    found = wait_for(lambda: collector.named(name), 30, f"the span {name!r} to be exported")
    assert len(found) == 1, found
    return found[0]


def test_an_event_posted_with_a_traceparent_is_one_trace_across_api_engine_and_worker(
        stack: Stack, collector: Collector) -> None:
    response = stack.http().post("/events", json={"order_id": "A-1"}, headers={
        "ce-specversion": "1.0", "ce-id": "e2e-1", "ce-source": "/shop", "ce-type": "order.placed",
        "traceparent": f"00-{TRACE}-{CALLER}-01"})
    assert response.status_code == 202, response.text
    run = wait_for(lambda: _finished(stack), 30, "the run to finish")
    assert run["status"] == "succeeded", run

    ingest, matched = _one(collector, "ingest order.placed"), _one(collector, "match order.placed")
    run_span = _one(collector, "run note_order")
    note, confirm = _one(collector, "task note_order.note"), _one(collector, "task note_order.confirm")
    emitted = _one(collector, "ingest order.noted")
    assert (ingest.service, matched.service, run_span.service, note.service, emitted.service) == (
        "orch-api", "orch-engine", "orch-engine", "orch-worker", "orch-worker")
    assert {s.trace_id for s in (ingest, matched, run_span, note, confirm, emitted)} == {TRACE}
    assert ingest.parent == CALLER
    assert matched.parent == ingest.span_id
    assert (run_span.span_id, run_span.parent) == (run_span_id(run["id"]), matched.span_id)
    assert note.parent == confirm.parent == run_span.span_id, "attempts are children of the run's span"
    assert emitted.parent == note.span_id, "an event a task emits continues the trace"
    assert run["trace"]["traceparent"] == f"00-{TRACE}-{run_span.span_id}-01"


def _finished(stack: Stack) -> dict[str, Any] | None:
    runs = stack.http().get("/runs", params={"workflow": "note_order"}).json()
    if not runs or runs[0]["status"] == "running":
        return None
    return dict(stack.http().get(f"/runs/{runs[0]['id']}").json())
