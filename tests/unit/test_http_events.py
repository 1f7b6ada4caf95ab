"""② The CloudEvents HTTP binding: structured, batch and binary mode, and the status each error answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.errors import EventError
from orchestrator.events.http import BATCH, MAX_BATCH, STRUCTURED, parse_http_events

EVENT = {"specversion": "1.0", "id": "e-1", "source": "/shop", "type": "order.created", "data": {"order_id": "A-1"}}
CE_HEADERS = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "/shop", "ce-type": "order.created"}


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def refused(content_type: str | None, headers: dict[str, str], payload: bytes) -> EventError:
    with pytest.raises(EventError) as caught:
        parse_http_events(content_type, headers, payload)
    return caught.value


# -- structured mode ---------------------------------------------------------------------------------


def test_structured_mode_reads_the_whole_event_from_the_body() -> None:
    (event,) = parse_http_events(STRUCTURED, {}, body(EVENT))

    assert event.to_dict() == EVENT


def test_structured_mode_ignores_content_type_parameters() -> None:
    (event,) = parse_http_events("Application/CloudEvents+JSON; charset=utf-8", {}, body(EVENT))

    assert event.id == "e-1"


def test_structured_mode_reports_a_bad_attribute_as_422() -> None:
    error = refused(STRUCTURED, {}, body({**EVENT, "specversion": "2.0"}))

    assert error.status_code == 422
    assert error.field == "specversion"


def test_structured_mode_requires_specversion() -> None:
    # CloudEvents 1.0 makes specversion REQUIRED of what a producer sends (Event.new may default it).
    error = refused(STRUCTURED, {}, body({k: v for k, v in EVENT.items() if k != "specversion"}))

    assert error.status_code == 422
    assert error.field == "specversion"


def test_batch_mode_requires_specversion_in_every_event() -> None:
    items = [EVENT, {k: v for k, v in EVENT.items() if k != "specversion"}]

    error = refused(BATCH, {}, body(items))

    assert error.field == "specversion"
    assert "events[1]" in str(error)


def test_malformed_json_is_a_400() -> None:
    error = refused(STRUCTURED, {}, b'{"id": ')

    assert error.status_code == 400
    assert error.field == "body"
    assert str(error).startswith("malformed JSON in body: ")


def test_nan_in_the_body_is_malformed_json() -> None:
    error = refused(STRUCTURED, {}, b'{"specversion": "1.0", "data": NaN}')

    assert error.status_code == 400


def test_an_empty_body_is_a_400() -> None:
    error = refused(STRUCTURED, {}, b"")

    assert (error.status_code, error.field, str(error)) == (400, "body", "empty body: expected JSON")


# -- batch mode --------------------------------------------------------------------------------------


def test_batch_mode_reads_every_event_in_order() -> None:
    items = [{**EVENT, "id": f"e-{i}"} for i in range(3)]

    events = parse_http_events(BATCH, {}, body(items))

    assert [e.id for e in events] == ["e-0", "e-1", "e-2"]


def test_a_bad_item_in_a_batch_is_named_by_its_position() -> None:
    items: list[Any] = [{**EVENT, "id": f"e-{i}"} for i in range(5)]
    del items[3]["source"]

    error = refused(BATCH, {}, body(items))

    assert str(error) == "missing required attribute 'events[3].source'"
    assert error.field == "source"
    assert error.status_code == 422


def test_a_batch_item_that_is_not_an_object_is_named_by_its_position() -> None:
    error = refused(BATCH, {}, body([EVENT, 42]))

    assert str(error) == "events[1]: a CloudEvent must be a JSON object, got int"


def test_a_batch_must_be_an_array() -> None:
    error = refused(BATCH, {}, body(EVENT))

    assert error.status_code == 400
    assert error.field == "body"
    assert str(error) == "a batch must be a JSON array of CloudEvents, got dict"


def test_a_batch_over_the_limit_is_a_422() -> None:
    items = [{**EVENT, "id": f"e-{i}"} for i in range(MAX_BATCH + 1)]

    error = refused(BATCH, {}, body(items))

    assert error.status_code == 422  # a count, not a size: 413 is for bytes over ORCH_EVENT_MAX_BYTES
    assert str(error) == f"a batch holds at most {MAX_BATCH} events, got {MAX_BATCH + 1}: send several batches"


def test_a_batch_at_the_limit_is_accepted() -> None:
    items = [{**EVENT, "id": f"e-{i}"} for i in range(MAX_BATCH)]

    assert len(parse_http_events(BATCH, {}, body(items))) == MAX_BATCH


# -- binary mode -------------------------------------------------------------------------------------


def test_binary_mode_reads_attributes_from_ce_headers_and_json_data_from_the_body() -> None:
    (event,) = parse_http_events("application/json", CE_HEADERS, body({"order_id": "A-1"}))

    assert (event.id, event.source, event.type) == ("e-1", "/shop", "order.created")
    assert event.data == {"order_id": "A-1"}
    assert event.datacontenttype == "application/json"


def test_binary_mode_header_names_are_case_insensitive_after_detection() -> None:
    headers = {"ce-specversion": "1.0", "CE-ID": "e-9", "Ce-Source": "/s", "ce-type": "t"}

    (event,) = parse_http_events(None, headers, b"")

    assert (event.id, event.source) == ("e-9", "/s")


def test_binary_mode_decodes_percent_encoded_header_values() -> None:
    headers = {**CE_HEADERS, "ce-source": "%2Fshop%2Fw%C3%A9b", "ce-subject": "order%20A-1"}

    (event,) = parse_http_events(None, headers, b"")

    assert event.source == "/shop/wéb"
    assert event.subject == "order A-1"


def test_binary_mode_turns_other_ce_headers_into_extensions() -> None:
    (event,) = parse_http_events(None, {**CE_HEADERS, "ce-traceparent": "00-abc-01"}, b"")

    assert event.extensions == {"traceparent": "00-abc-01"}


def test_binary_mode_parses_a_plus_json_body_as_json() -> None:
    (event,) = parse_http_events("application/vnd.shop.order+json", CE_HEADERS, body([1, 2]))

    assert event.data == [1, 2]


def test_binary_mode_keeps_a_text_body_as_a_string() -> None:
    (event,) = parse_http_events("text/plain; charset=utf-8", CE_HEADERS, "héllo".encode())

    assert event.data == "héllo"
    assert event.datacontenttype == "text/plain; charset=utf-8"


def test_binary_mode_refuses_text_that_is_not_utf8() -> None:
    error = refused("text/plain", CE_HEADERS, b"\xff\xfe")

    assert (error.status_code, error.field) == (400, "data")


def test_binary_mode_keeps_any_other_body_as_base64() -> None:
    (event,) = parse_http_events("application/octet-stream", CE_HEADERS, b"\x00\x01\x02")

    assert event.data is None
    assert event.data_base64 == "AAEC"


def test_binary_mode_with_malformed_json_data_is_a_400() -> None:
    error = refused("application/json", CE_HEADERS, b"{oops")

    assert error.status_code == 400
    assert error.field == "data"
    assert str(error).startswith("malformed JSON in data: ")


@pytest.mark.parametrize("attribute", ["data", "data_base64", "datacontenttype"])
def test_binary_mode_refuses_data_in_a_header(attribute: str) -> None:
    error = refused("application/json", {**CE_HEADERS, f"ce-{attribute}": "x"}, b"")

    assert error.status_code == 400
    assert error.field == attribute
    assert str(error) == f"header 'ce-{attribute}' is not allowed in binary mode"


def test_binary_mode_reports_a_bad_attribute_as_422() -> None:
    headers = {k: v for k, v in CE_HEADERS.items() if k != "ce-source"}

    error = refused("application/json", headers, b"{}")

    assert (error.status_code, error.field) == (422, "source")


# -- content types -----------------------------------------------------------------------------------


def test_a_missing_content_type_without_ce_headers_is_a_415() -> None:
    error = refused(None, {}, body(EVENT))

    assert error.status_code == 415
    assert error.field == "content-type"
    assert str(error).startswith("missing Content-Type: ")
    assert "application/cloudevents+json" in str(error)


def test_an_unsupported_content_type_without_ce_headers_is_a_415() -> None:
    error = refused("application/json", {}, body(EVENT))

    assert error.status_code == 415
    assert str(error).startswith("unsupported Content-Type 'application/json' without ce-* headers")


# -- sources reserved for orch's own triggers --------------------------------------------------------


@pytest.mark.parametrize("source", ["/schedules/nightly-digest", "/hooks/github", "/watches/inbox"])
def test_a_reserved_source_is_refused_in_every_mode(source: str) -> None:
    structured = refused(STRUCTURED, {}, body({**EVENT, "source": source}))
    binary = refused("application/json", {**CE_HEADERS, "ce-source": source}, body({"a": 1}))
    batch = refused(BATCH, {}, body([EVENT, {**EVENT, "id": "e-2", "source": source}]))

    for error in (structured, binary, batch):
        assert (error.status_code, error.field) == (422, "source") and "reserved" in str(error)
        assert source in str(error)
    assert str(batch).startswith("events[1].source")


@pytest.mark.parametrize("source", ["/schedules", "/my/schedules/x", "/hooksy", "/watch/inbox"])
def test_sources_that_only_look_alike_are_accepted(source: str) -> None:
    (event,) = parse_http_events(STRUCTURED, {}, body({**EVENT, "source": source}))

    assert event.source == source
