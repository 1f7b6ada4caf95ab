"""② The Event: a CloudEvents 1.0 envelope, validated once where it enters and immutable after.

Required attributes: `specversion` ("1.0"), `id`, `source`, `type`. Optional: `subject`, `time`
(RFC 3339 with an offset, kept in UTC), `datacontenttype`, `dataschema`, `data` (any JSON) or
`data_base64`. Extension attributes (lowercase a-z/0-9, at most 20 characters, string/integer/boolean
values) are kept in `extensions` and written back as top-level attributes. The distributed-tracing
attributes `traceparent` / `tracestate` are extensions like any other here: a malformed one is kept as
sent, never a reason to refuse the event, and tracing reads them strictly (orchestrator/tracing.py).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import EventError
from ..jsonutil import JSONValueError, check_json

__all__ = ["CORE_ATTRIBUTES", "Event", "event_from_mapping", "extension_problem", "new_event_id"]

CORE_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data", "data_base64"}
)
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
# Checked by pydantic-core's Rust regex (pinned in Event's config): no Python call per attribute. Under
# Python's `re`, `$` would also match before a final newline; under Rust's it is the end of the text only.
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # the CloudEvents Integer type


def extension_problem(name: Any, value: Any) -> str | None:
    """What is wrong with extension attribute `name` = `value`, or None."""
    if not isinstance(name, str) or not _EXTENSION_NAME.match(name):
        return f"{name!r} is not a valid attribute name (extension attributes are 1-20 characters a-z, 0-9)"
    if name in CORE_ATTRIBUTES:
        return f"{name!r} is a core attribute, not an extension"
    if isinstance(value, float) and value.is_integer():  # JSON has one number type: 3.0 is the integer 3
        value = int(value)
    if not isinstance(value, str | int | bool) or isinstance(value, float):
        return f"attribute {name!r} must be a string, integer or boolean"
    if isinstance(value, int) and not isinstance(value, bool) and not INT32_MIN <= value <= INT32_MAX:
        return f"attribute {name!r}: a CloudEvents integer is 32-bit, from {INT32_MIN} to {INT32_MAX}"
    return None


def new_event_id() -> str:
    """A fresh, globally unique event id: 128 random bits as 32 hex digits (uuid4's form without its
    version bits, and without building a UUID object: a fifth of the cost, on every event)."""
    return os.urandom(16).hex()


class _Problem(ValueError):
    """What the model's Python check found wrong, with the attribute it belongs to (`field`).

    `framed` problems read "attribute '<field>': <text>"; the others are whole sentences that name the
    attribute themselves (those of `extension_problem`)."""

    def __init__(self, field: str, text: str, *, framed: bool = True) -> None:
        super().__init__(text)
        self.field, self.text, self.framed = field, text, framed

    def message(self, prefix: str) -> str:
        return f"attribute '{prefix}{self.field}': {self.text}" if self.framed else f"{prefix}{self.text}"


class Event(BaseModel):
    """A CloudEvents 1.0 event. Build one with `Event.new(...)` or `event_from_mapping(...)`."""

    model_config = ConfigDict(frozen=True, extra="forbid", regex_engine="rust-regex")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=256, pattern=_NO_CONTROL)
    source: str = Field(min_length=1, max_length=1024, pattern=_NO_CONTROL)
    type: str = Field(min_length=1, max_length=256, pattern=_NO_CONTROL)
    subject: str | None = Field(default=None, min_length=1, max_length=1024, pattern=_NO_CONTROL)
    time: AwareDatetime | None = None
    datacontenttype: str | None = Field(default=None, min_length=1, max_length=256, pattern=_NO_CONTROL)
    dataschema: str | None = Field(default=None, min_length=1, max_length=1024, pattern=_NO_CONTROL)
    data: Any = None
    data_base64: str | None = None
    extensions: dict[str, str | int | bool] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, values: Any) -> Any:
        """Every check pydantic-core cannot make, in one Python call per event (each call from the
        validator costs as much as a simple check): see `_checked_attributes`."""
        return _checked_attributes(values) if isinstance(values, (dict, Mapping)) else values

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        try:
            return value.astimezone(UTC) if value is not None else None
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is valid RFC 3339, but in UTC it falls in year 0
            return value  # kept with its own offset

    @field_validator("data_base64")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("is not valid base64") from None
        return value

    @classmethod
    def new(
        cls,
        type: str,
        data: Any = None,
        *,
        source: str,
        subject: str | None = None,
        id: str | None = None,
        time: datetime | None = None,
        datacontenttype: str | None = None,
        extensions: Mapping[str, str | int | bool] | None = None,
    ) -> Event:
        """An event with a fresh id and the current time unless given; raises EventError when invalid."""
        return event_from_mapping(
            {
                "type": type,
                "source": source,
                "id": id or new_event_id(),
                "time": time or datetime.now(UTC),
                "subject": subject,
                "datacontenttype": datacontenttype,
                "data": data,
                "extensions": dict(extensions or {}),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """The event in CloudEvents JSON format (structured mode): extensions as top-level attributes."""
        out: dict[str, Any] = {"specversion": self.specversion, "id": self.id, "source": self.source, "type": self.type}
        if self.subject is not None:
            out["subject"] = self.subject
        if self.time is not None:
            out["time"] = _rfc3339(self.time)
        if self.datacontenttype is not None:
            out["datacontenttype"] = self.datacontenttype
        if self.dataschema is not None:
            out["dataschema"] = self.dataschema
        if self.data_base64 is not None:
            out["data_base64"] = self.data_base64
        elif self.data is not None:
            out["data"] = self.data
        out.update(self.extensions)
        return out


_last_time: tuple[datetime, str] | None = None  # the last time _rfc3339 formatted, and its text


def _rfc3339(value: datetime) -> str:
    """`value` as RFC 3339 text, UTC as "Z". The events of one `emit_many` call share one datetime object
    (events/client.py), and isoformat costs about 1.8 us, a tenth of a client's CPU per event: the last
    object formatted is remembered, by identity (an equal time in another offset must not match)."""
    global _last_time
    last = _last_time
    if last is not None and last[0] is value:
        return last[1]
    text = value.isoformat().replace("+00:00", "Z")
    _last_time = (value, text)
    return text


def event_from_mapping(values: Any, where: str = "") -> Event:
    """Validate one CloudEvent given as a mapping; EventError names the first bad attribute.

    `where` prefixes the attribute in messages, e.g. "events[3]" for a batch. A core attribute given as
    None counts as absent. With several problems, the one named is the first found: the checks of
    `_checked_attributes` (extensions, time's type, data) come before pydantic's own (required attributes,
    lengths, control characters).
    """
    if not isinstance(values, (dict, Mapping)):  # dict first: a plain type check, before the ABC's
        raise EventError(f"{where or 'event'}: a CloudEvent must be a JSON object, got {type(values).__name__}")
    try:
        return Event.model_validate(values)
    except ValidationError as exc:
        raise _event_error(exc, where) from None


def _checked_attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with the unknown attributes moved into `extensions` (a top-level one wins over the same name
    in `extensions`) and core attributes given as None dropped, after the checks pydantic-core cannot
    make: extension names and values, `time` given as text or a datetime (never a number), `data` as
    plain JSON, and not both kinds of data. Raises _Problem."""
    core: dict[str, Any] = {}
    extensions: dict[str, Any] = {}
    nested: Any = None
    for key, value in values.items():
        if key in CORE_ATTRIBUTES:
            if value is not None or key == "data":
                core[key] = value
        elif key == "extensions":
            nested = value
        else:
            extensions[key] = value
    if nested is not None:
        if not isinstance(nested, Mapping):
            raise _Problem("extensions", "must be an object of extension attributes")
        extensions = {**nested, **extensions}
    for name, value in extensions.items():
        problem = extension_problem(name, value)
        if problem:
            raise _Problem(str(name), problem, framed=False)
    core["extensions"] = extensions
    _check_time_and_data(core)
    return core


def _check_time_and_data(core: dict[str, Any]) -> None:
    time = core.get("time")
    if time is not None and not isinstance(time, str | datetime):
        raise _Problem("time", "must be an RFC 3339 timestamp such as 2026-05-01T12:00:00Z")
    data = core.get("data")
    if data is None:
        return
    if core.get("data_base64") is not None:
        raise _Problem("data_base64", "an event carries either data or data_base64, not both")
    try:
        check_json(data, "data")
    except JSONValueError as exc:
        raise _Problem("data", str(exc)) from None


def _event_error(exc: ValidationError, where: str) -> EventError:
    first = exc.errors()[0]
    prefix = f"{where}." if where else ""
    problem = (first.get("ctx") or {}).get("error")
    if isinstance(problem, _Problem):
        return EventError(problem.message(prefix), field=problem.field)
    field = str(first["loc"][0]) if first["loc"] else "event"  # extensions are checked by _checked_attributes
    if first["type"] == "missing":
        message = f"missing required attribute '{prefix}{field}'"
    elif first["type"] == "string_pattern_mismatch":  # the only pattern of Event is _NO_CONTROL
        message = f"attribute '{prefix}{field}': must not contain control characters"
    elif first["type"] == "literal_error" and field == "specversion":
        message = f"attribute '{prefix}specversion' must be \"1.0\" (got {first.get('input')!r})"
    else:
        message = f"attribute '{prefix}{field}': {first['msg'].removeprefix('Value error, ')}"
    return EventError(message, field=field)
