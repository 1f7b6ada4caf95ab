"""What `orch api` answers, as pydantic models and documented responses, so the OpenAPI schema says
exactly which bodies, content types and status codes each route returns (a schema-driven fuzzer checks)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CLOUD_EVENT", "Accepted", "Health", "Problem", "Steered", "WebhookAccepted", "errors"]

_TEXT = r"^[^\x00-\x1f\x7f]+$"  # no control characters


def _text(max_length: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": _TEXT}


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


# A structured-mode CloudEvent as orch accepts it (orchestrator/events/envelope.py): core attributes, and
# extension attributes of 1-20 lower-case letters or digits whose values are strings, integers or booleans.
CLOUD_EVENT: dict[str, Any] = {
    "type": "object",
    "description": "A CloudEvent 1.0. Sources under /schedules/, /hooks/, /watches/ and /runs/ are reserved for orch's "
                   "own triggers (422).",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": _text(256), "source": _text(1024), "type": _text(256), "subject": _optional(_text(1024)),
        "time": _optional({"type": "string", "format": "date-time"}),
        "datacontenttype": _optional(_text(256)), "dataschema": _optional(_text(1024)),
        "data": {"description": "Any JSON value, at most 64 levels deep"},
        "data_base64": _optional({"type": "string",
                                  "pattern": "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"}),
    },
    "propertyNames": {"pattern": "^([a-z0-9]{1,20}|data_base64)$"},
    "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "boolean"},
                                       {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}]},
    "not": {"required": ["data", "data_base64"]},
}


class Problem(BaseModel):
    """An error: what is wrong and what to do; `field` names the offending input, `scope` the scope a
    route needs (401, 403)."""

    model_config = ConfigDict(extra="allow")

    error: str
    field: str | None = None
    scope: str | None = None


class Accepted(BaseModel):
    """Events in the stream: their ids, and those that were already accepted (same source and id)."""

    ids: list[str]
    duplicates: list[str]


class Steered(BaseModel):
    """A steering request the engine will carry out (for a rerun: the new run)."""

    action: str
    run: str
    new_run: str | None = None
    task: str | None = None  # of an approval: the approval step ...
    request: str | None = None  # ... and the request's id: the step's via.request once it is the one applied


class Health(BaseModel):
    """Liveness: whether Redis answers."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(description="ok, or unavailable (with 503)")
    redis: dict[str, Any]
    version: str | None = None


class WebhookAccepted(BaseModel):
    """A webhook's event in the stream (`duplicate`: it was delivered before and not published again)."""

    id: str
    type: str
    source: str
    duplicate: bool


_WHY = {
    400: "Malformed input (JSON that does not parse, a header that is not allowed)",
    401: "No token, or not a valid one; the body says which scope the route needs",
    403: "The token lacks the route's scope; the body names it",
    404: "No such thing; the body says what there is",
    409: "Not possible in the run's current state",
    413: "The body is over the size limit",
    415: "The content type is not one the route takes",
    422: "The input is well-formed but invalid; `field` names what is wrong",
    503: "Redis is unavailable: nothing was accepted; retry after Retry-After seconds",
}


def errors(*codes: int, **overrides: str) -> dict[int | str, dict[str, Any]]:
    """Documented error responses (a Problem body) for `codes`; overrides: `e404="..."` descriptions."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        out[code] = {"model": Problem, "description": overrides.get(f"e{code}", _WHY[code])}
        if code == 503:
            out[code]["headers"] = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
        if code in (401, 403):
            out[code]["headers"] = {"WWW-Authenticate": {"description": "The scheme and scope needed",
                                                         "schema": {"type": "string"}}}
    return out
