"""CloudEvents HTTP protocol binding (v1.0.2), as a pure function of content type, headers and body.

The three modes are told apart by Content-Type:
- structured: `application/cloudevents+json`, the whole event is the JSON body;
- batch: `application/cloudevents-batch+json`, a JSON array of structured events;
- binary: any other type with `ce-*` headers; the body is the event's data and Content-Type its
  `datacontenttype`.

These are `custom` events: sources under `/schedules/`, `/hooks/` and `/watches/`, which belong to orch's
own triggers, are refused (422). The request's W3C `traceparent` header is the trace context of each event
that does not carry a valid one of its own (orchestrator/tracing.py).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from ..errors import EventError
from ..jsonutil import loads
from ..tracing import adopt_header
from .envelope import Event, event_from_mapping
from .sources import check_custom_source

__all__ = ["BATCH", "MAX_BATCH", "STRUCTURED", "parse_http_events"]

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
MAX_BATCH = 1000

_MODES_HINT = (
    "send a CloudEvent as Content-Type application/cloudevents+json (structured mode), "
    "application/cloudevents-batch+json (batch mode), or with ce-specversion/ce-id/ce-source/ce-type "
    "headers (binary mode)"
)


def parse_http_events(content_type: str | None, headers: Mapping[str, str], body: bytes) -> list[Event]:
    """The events carried by one HTTP request; raises EventError with the HTTP status to answer."""
    events = _parse(content_type, headers, body)
    for index, event in enumerate(events):
        check_custom_source(event.source, f"events[{index}]" if len(events) > 1 else "")
    return adopt_header(events, headers)


def _parse(content_type: str | None, headers: Mapping[str, str], body: bytes) -> list[Event]:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == STRUCTURED:
        return [_structured(_parse_json(body, "body"), "")]
    if media == BATCH:
        return _parse_batch(body)
    if "ce-specversion" in headers:
        return [_parse_binary(content_type, media, headers, body)]
    if not media:
        raise EventError(f"missing Content-Type: {_MODES_HINT}", field="content-type", status_code=415)
    raise EventError(f"unsupported Content-Type {media!r} without ce-* headers: {_MODES_HINT}",
                     field="content-type", status_code=415)


def _parse_json(body: bytes, what: str) -> Any:
    if not body:
        raise EventError(f"empty {what}: expected JSON", field=what, status_code=400)
    try:
        return loads(body)
    except ValueError as exc:
        raise EventError(f"malformed JSON in {what}: {exc}", field=what, status_code=400) from None


def _parse_batch(body: bytes) -> list[Event]:
    items = _parse_json(body, "body")
    if not isinstance(items, list):
        raise EventError(f"a batch must be a JSON array of CloudEvents, got {type(items).__name__}",
                         field="body", status_code=400)
    if len(items) > MAX_BATCH:
        raise EventError(f"a batch holds at most {MAX_BATCH} events, got {len(items)}: send several batches",
                         field="body", status_code=422)
    return [_structured(item, f"events[{i}]") for i, item in enumerate(items)]


def _structured(values: Any, where: str) -> Event:
    # The Event model defaults specversion for events built in Python; on the wire it is required.
    if isinstance(values, dict) and values.get("specversion") is None:
        prefix = f"{where}." if where else ""
        raise EventError(f"missing required attribute '{prefix}specversion'", field="specversion")
    return event_from_mapping(values, where=where)


def _parse_binary(content_type: str | None, media: str, headers: Mapping[str, str], body: bytes) -> Event:
    attributes: dict[str, Any] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("ce-") and len(lower) > 3:
            attributes[lower[3:]] = unquote(value)
    for attr in ("data", "data_base64", "datacontenttype"):
        if attr in attributes:
            raise EventError(f"header 'ce-{attr}' is not allowed in binary mode", field=attr, status_code=400)
    if content_type:
        attributes["datacontenttype"] = content_type
    if body:
        if media == "application/json" or media.endswith("+json"):
            attributes["data"] = _parse_json(body, "data")
        elif media.startswith("text/"):
            try:
                attributes["data"] = body.decode("utf-8")
            except UnicodeDecodeError:
                raise EventError("text data is not valid UTF-8", field="data", status_code=400) from None
        else:
            attributes["data_base64"] = base64.b64encode(body).decode("ascii")
    return event_from_mapping(attributes)
