"""② The CloudEvents envelope: what an event must carry, and the messages that name what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from orchestrator.errors import EventError
from orchestrator.events.envelope import Event, event_from_mapping

MINIMAL = {"specversion": "1.0", "id": "e-1", "source": "/shop", "type": "order.created"}


def rejected(values: Any, where: str = "") -> EventError:
    with pytest.raises(EventError) as caught:
        event_from_mapping(values, where)
    return caught.value


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


def test_a_minimal_event_is_accepted() -> None:
    event = event_from_mapping(MINIMAL)

    assert (event.specversion, event.id, event.source, event.type) == ("1.0", "e-1", "/shop", "order.created")
    assert event.data is None and event.extensions == {}


@pytest.mark.parametrize("attribute", ["id", "source", "type"])
def test_a_missing_required_attribute_is_named(attribute: str) -> None:
    values = {k: v for k, v in MINIMAL.items() if k != attribute}

    error = rejected(values)

    assert str(error) == f"missing required attribute '{attribute}'"
    assert error.field == attribute
    assert error.status_code == 422


def test_a_batch_position_prefixes_the_attribute() -> None:
    values = {k: v for k, v in MINIMAL.items() if k != "source"}

    error = rejected(values, where="events[3]")

    assert str(error) == "missing required attribute 'events[3].source'"
    assert error.field == "source"


def test_only_specversion_1_0_is_accepted() -> None:
    error = rejected({**MINIMAL, "specversion": "0.3"})

    assert str(error) == "attribute 'specversion' must be \"1.0\" (got '0.3')"
    assert error.field == "specversion"


def test_an_empty_required_attribute_is_rejected() -> None:
    error = rejected({**MINIMAL, "type": ""})

    assert error.field == "type"
    assert str(error).startswith("attribute 'type': ")


def test_something_other_than_an_object_is_not_an_event() -> None:
    error = rejected(["not", "an", "event"], where="events[0]")

    assert str(error) == "events[0]: a CloudEvent must be a JSON object, got list"


def test_a_time_without_an_offset_is_rejected() -> None:
    error = rejected({**MINIMAL, "time": "2024-05-01T12:00:00"})

    assert error.field == "time"
    assert str(error) == "attribute 'time': Input should have timezone info"


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_valid_time_that_falls_off_the_calendar_in_utc_keeps_its_offset(time: str) -> None:
    event = event_from_mapping({**MINIMAL, "time": time})

    assert event.to_dict()["time"] == time


def test_a_time_with_an_offset_is_kept_in_utc() -> None:
    event = event_from_mapping({**MINIMAL, "time": "2024-05-01T14:00:00+02:00"})

    assert event.time == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert event.time is not None and event.time.utcoffset() == timedelta(0)
    assert event.to_dict()["time"] == "2024-05-01T12:00:00Z"


@pytest.mark.parametrize("value", ["bad\nvalue", "value\n", "tab\there", "del\x7f"])
@pytest.mark.parametrize("attribute", ["id", "source", "type", "subject", "datacontenttype", "dataschema"])
def test_control_characters_are_rejected(attribute: str, value: str) -> None:
    error = rejected({**MINIMAL, attribute: value})

    assert error.field == attribute
    assert str(error) == f"attribute '{attribute}': must not contain control characters"


def test_text_beyond_ascii_is_not_a_control_character() -> None:
    event = event_from_mapping({**MINIMAL, "subject": "café \u2028 \u0085 日本"})

    assert event.subject == "café \u2028 \u0085 日本"


def test_a_top_level_extension_wins_over_the_same_name_in_extensions() -> None:
    event = event_from_mapping({**MINIMAL, "tenant": "top", "extensions": {"tenant": "nested", "other": 1}})

    assert event.extensions == {"tenant": "top", "other": 1}


@pytest.mark.parametrize("value", ["abc", 5, ["a"]])
def test_extensions_must_be_an_object(value: Any) -> None:
    error = rejected({**MINIMAL, "extensions": value}, where="events[2]")

    assert error.field == "extensions"
    assert str(error) == "attribute 'events[2].extensions': must be an object of extension attributes"


@pytest.mark.parametrize("value", [1714564800, 1714564800.5, True, ["2024-05-01T12:00:00Z"]])
def test_a_time_that_is_not_text_is_rejected(value: Any) -> None:
    error = rejected({**MINIMAL, "time": value})

    assert error.field == "time"
    assert str(error) == "attribute 'time': must be an RFC 3339 timestamp such as 2026-05-01T12:00:00Z"


def test_unknown_attributes_become_extensions() -> None:
    event = event_from_mapping({**MINIMAL, "traceparent": "00-abc", "retries": 3, "urgent": True})

    assert event.extensions == {"traceparent": "00-abc", "retries": 3, "urgent": True}
    assert event.to_dict()["traceparent"] == "00-abc"


@pytest.mark.parametrize("name", ["TraceParent", "trace_parent", "a" * 21])
def test_an_invalid_extension_name_is_rejected(name: str) -> None:
    error = rejected({**MINIMAL, name: "x"})

    assert f"{name!r} is not a valid attribute name" in str(error)
    assert "1-20 characters a-z, 0-9" in str(error)


@pytest.mark.parametrize("value", [1.5, {"nested": 1}, ["a"]], ids=["float", "object", "array"])
def test_an_extension_value_must_be_a_string_integer_or_boolean(value: Any) -> None:
    error = rejected({**MINIMAL, "myext": value})

    assert "attribute 'myext' must be a string, integer or boolean" in str(error)


def test_an_invalid_extension_is_named_as_the_offending_attribute() -> None:
    # EventError.field names the offending attribute: for an extension that is its own name, which is
    # what a client sent, not the internal `extensions` container.
    error = rejected({**MINIMAL, "myext": 1.5})

    assert error.field == "myext"
    assert not str(error).startswith("attribute 'extensions'")


def test_event_new_refuses_a_core_attribute_as_an_extension() -> None:
    with pytest.raises(EventError, match="'subject' is a core attribute, not an extension"):
        Event.new("t", source="/s", extensions={"subject": "x"})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {"total": [1, float("-inf")]}])
def test_data_must_be_finite_json(bad: Any) -> None:
    error = rejected({**MINIMAL, "data": bad})

    assert error.field == "data"
    assert "is not valid JSON (only finite numbers are)" in str(error)


def test_the_message_points_into_the_data() -> None:
    error = rejected({**MINIMAL, "data": {"lines": [{"qty": float("nan")}]}})

    assert "data.lines[0].qty: nan is not valid JSON" in str(error)


def test_deeply_nested_data_is_rejected() -> None:
    error = rejected({**MINIMAL, "data": nested(100)})

    assert error.field == "data"
    assert "nested deeper than 64 levels" in str(error)


def test_data_and_data_base64_are_exclusive() -> None:
    error = rejected({**MINIMAL, "data": {"a": 1}, "data_base64": "AAEC"})

    assert "either data or data_base64, not both" in str(error)


def test_data_base64_must_be_valid_base64() -> None:
    error = rejected({**MINIMAL, "data_base64": "not base64!"})

    assert error.field == "data_base64"
    assert str(error) == "attribute 'data_base64': is not valid base64"


def test_event_new_fills_in_an_id_and_the_time() -> None:
    before = datetime.now(UTC)

    event = Event.new("order.created", {"order_id": "A-1"}, source="/shop")

    assert len(event.id) == 32
    assert event.time is not None and event.time >= before
    assert Event.new("t", source="/s").id != Event.new("t", source="/s").id


def test_event_new_converts_an_aware_time_to_utc() -> None:
    paris = timezone(timedelta(hours=2))

    event = Event.new("t", source="/s", time=datetime(2024, 5, 1, 14, 0, tzinfo=paris))

    assert event.time == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_event_new_rejects_a_naive_time() -> None:
    with pytest.raises(EventError) as caught:
        Event.new("t", source="/s", time=datetime(2024, 5, 1, 12, 0))

    assert caught.value.field == "time"


def test_events_are_immutable() -> None:
    event = event_from_mapping(MINIMAL)

    with pytest.raises(ValueError):
        event.type = "other"  # type: ignore[misc]


def test_to_dict_and_back_gives_the_same_event() -> None:
    event = Event.new(
        "order.created", {"order_id": "A-1", "lines": [{"sku": "x", "qty": 2}], "total": 9.5},
        source="/shop/web", subject="A-1", id="evt-7", datacontenttype="application/json",
        time=datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), extensions={"tenant": "acme", "attempt": 2},
    )

    wire = event.to_dict()

    assert wire["tenant"] == "acme" and "extensions" not in wire
    assert event_from_mapping(wire) == event


def test_binary_data_round_trips_through_to_dict() -> None:
    event = event_from_mapping({**MINIMAL, "datacontenttype": "application/octet-stream", "data_base64": "AAEC"})

    wire = event.to_dict()

    assert wire["data_base64"] == "AAEC" and "data" not in wire
    assert event_from_mapping(wire) == event


def test_the_time_text_is_remembered_only_for_the_same_object() -> None:
    from orchestrator.events.envelope import _rfc3339

    paris = timezone(timedelta(hours=2))
    utc = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    same_instant = datetime(2024, 5, 1, 14, 0, tzinfo=paris)  # equal to `utc`, another text

    assert _rfc3339(utc) == "2024-05-01T12:00:00Z"
    assert _rfc3339(utc) == "2024-05-01T12:00:00Z"
    assert _rfc3339(same_instant) == "2024-05-01T14:00:00+02:00"
    assert _rfc3339(datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=UTC)) == "2024-05-01T12:00:00.000005Z"
