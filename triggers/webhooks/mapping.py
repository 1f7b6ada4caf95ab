"""From a verified webhook request to a CloudEvent: parse the body strictly, then map type, id and subject.

Pure functions of the endpoint's configuration, the headers, the raw body, what verification learned and
the clock; they raise Rejected with the HTTP status to answer. See the package docstring for the mapping.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from orchestrator.errors import RuleError
from orchestrator.events.envelope import Event, new_event_id
from orchestrator.jsonutil import JSONValueError, check_json, loads
from orchestrator.tracing import adopt_header

from .config import HookConfig, Scheme
from .verify import DEFAULT_TOKEN_HEADER, Verified

__all__ = ["FORM", "GITHUB_DELIVERY", "GITHUB_PAYLOAD_KEYS", "Challenge", "Rejected", "build_event", "parse_payload"]

FORM = "application/x-www-form-urlencoded"
_FORM_SCHEMES = (Scheme.GITHUB, Scheme.SLACK)  # GitHub's "form" content type; Slack commands, interactivity
_HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
MAX_FORM_FIELDS = 1000
GITHUB_DELIVERY = "githubdelivery"  # the extension attribute carrying X-GitHub-Delivery (not signed)
# A field every payload of these GitHub events has: a replayed body under another X-GitHub-Event is refused.
GITHUB_PAYLOAD_KEYS = {
    "push": "commits", "pull_request": "pull_request", "issues": "issue", "issue_comment": "comment",
    "release": "release", "ping": "hook_id", "workflow_run": "workflow_run", "workflow_job": "workflow_job",
    "check_run": "check_run", "check_suite": "check_suite", "deployment": "deployment",
    "deployment_status": "deployment_status", "pull_request_review": "review",
}


class Rejected(Exception):
    """A request that is authentic but cannot become an event; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        self.status = status
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Challenge:
    """A handshake to answer instead of publishing (Slack's url_verification)."""

    response: dict[str, Any]


def parse_payload(config: HookConfig, content_type: str | None, body: bytes) -> dict[str, Any]:
    """The request body as a JSON object: JSON, or (github, slack) a form; Rejected 400/415/422 otherwise."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == FORM and config.verify in _FORM_SCHEMES:
        data = _form(config, body)
    elif not media or media == "application/json" or media.endswith("+json"):
        data = _json(body, "body")
    else:
        accepted = "application/json" + (f" or {FORM}" if config.verify in _FORM_SCHEMES else "")
        raise Rejected(415, f"unsupported Content-Type {media!r}: send {accepted}", "content-type")
    if not isinstance(data, dict):
        raise Rejected(422, f"the body must be a JSON object, got {_kind(data)}", "body")
    try:
        check_json(data, "body")
    except JSONValueError as exc:
        raise Rejected(422, str(exc), "body") from None
    return data


def _json(raw: bytes, what: str) -> Any:
    if not raw.strip():
        raise Rejected(400, f"empty {what}: expected a JSON object", what)
    try:
        return loads(raw)
    except ValueError as exc:
        raise Rejected(400, f"malformed JSON in {what}: {exc}", what) from None


def _form(config: HookConfig, body: bytes) -> Any:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
                          max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected(400, f"malformed form body: {exc}", "body") from None
    fields = dict(pairs)
    if "payload" in fields:  # GitHub's form mode and Slack's interactive payloads carry JSON in `payload`
        return _json(fields["payload"].encode(), "payload")
    if config.verify is Scheme.GITHUB:
        raise Rejected(400, "a form body from GitHub carries the event in a 'payload' field", "body")
    return fields


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def build_event(config: HookConfig, headers: Mapping[str, str], data: dict[str, Any], body: bytes,
                verified: Verified, now: datetime) -> Event | Challenge:
    """The event for one verified request (or the handshake to answer); Rejected when it cannot be made."""
    lower = {k.lower(): v for k, v in headers.items()}
    if config.verify is Scheme.SLACK and data.get("type") == "url_verification":
        challenge = data.get("challenge")
        if not isinstance(challenge, str):
            raise Rejected(422, "a url_verification request without a string 'challenge'", "body.challenge")
        return Challenge({"challenge": challenge})
    event_type, event_id, subject = _defaults(config, lower, data, body, verified)
    extensions: dict[str, str | int | bool] = {}
    if config.verify is Scheme.GITHUB and verified.delivery_id:  # unsigned: kept for tracing only
        extensions[GITHUB_DELIVERY] = verified.delivery_id[:256]
    if config.templates is not None:
        hidden = _HIDDEN_HEADERS | {(config.header or DEFAULT_TOKEN_HEADER).lower()}
        context = {"body": data, "data": data, "hook": config.name,
                   "headers": {k: v for k, v in lower.items() if k not in hidden}}
        try:
            rendered = config.templates.render(context)
        except RuleError as exc:
            raise Rejected(422, f"cannot map the request to an event: {str(exc).removeprefix('params.')}",
                           "body") from None
        event_type = _text(rendered.get("type", event_type), "type")
        event_id = _text(rendered.get("id", event_id), "id")
        subject = _text(rendered.get("subject", subject), "subject")
    if not event_type:
        raise Rejected(422, "cannot tell the event type: set `type:` on the endpoint", "type")
    event = Event.new(event_type, data, source=config.event_source, subject=subject or None,
                      id=event_id or new_event_id(), time=now, datacontenttype="application/json",
                      extensions=extensions)
    return adopt_header([event], lower)[0]  # the request's traceparent header, when valid


def _text(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected(422, f"the {what} template must give a string, got {_kind(value)}", what)
    return str(value)


def _defaults(config: HookConfig, headers: Mapping[str, str], data: dict[str, Any], body: bytes,
              verified: Verified) -> tuple[str | None, str | None, str | None]:
    """(type, id, subject) as the provider defines them; templates may override each."""
    body_type = data.get("type") if isinstance(data.get("type"), str) else None
    if config.verify is Scheme.GITHUB:
        return _github(config, headers, data, body)
    if config.verify is Scheme.STRIPE:
        event_id = data.get("id") if isinstance(data.get("id"), str) else None
        if (body_type is None and config.type is None) or (event_id is None and config.id is None):
            raise Rejected(422, "not a Stripe event: the body needs string 'id' and 'type' fields", "body")
        return f"stripe.{body_type}", event_id, _path(data, "data", "object", "id")
    if config.verify is Scheme.SLACK:
        return _slack(data, body, verified, body_type)
    prefix = config.name
    event_type = f"{prefix}.{body_type}" if body_type else prefix
    return event_type, verified.delivery_id, None


def _github(config: HookConfig, headers: Mapping[str, str], data: dict[str, Any],
            body: bytes) -> tuple[str | None, str | None, str | None]:
    # GitHub signs only the body: X-GitHub-Delivery and X-GitHub-Event can be changed by whoever replays a
    # captured request. So the id (the dedup key) is a digest of the body, which a redelivery repeats, and
    # the event header must agree with what the body holds where that is cheap to tell.
    kind = headers.get("x-github-event", "").strip()
    if not kind and config.type is None:
        raise Rejected(400, "missing X-GitHub-Event header", "x-github-event")
    hint = GITHUB_PAYLOAD_KEYS.get(kind)
    if hint is not None and hint not in data:
        raise Rejected(422, f"X-GitHub-Event {kind!r} does not match the body (a {kind} payload has a "
                       f"{hint!r} field)", "x-github-event")
    action = data.get("action")
    event_type = f"github.{kind}" + (f".{action}" if isinstance(action, str) and action else "")
    event_id = "github-" + hashlib.sha256(body).hexdigest()
    return event_type, event_id, _path(data, "repository", "full_name")


def _slack(data: dict[str, Any], body: bytes, verified: Verified,
           body_type: str | None) -> tuple[str | None, str | None, str | None]:
    inner = data.get("event")
    if body_type == "event_callback" and isinstance(inner, dict) and isinstance(inner.get("type"), str):
        event_type, subject = f"slack.{inner['type']}", _path(data, "event", "channel")
    elif body_type:
        event_type, subject = f"slack.{body_type}", None
    elif isinstance(data.get("command"), str):  # a slash command (form fields)
        event_type, subject = "slack.command", data["command"]
    else:
        event_type, subject = None, None
    event_id = data.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        # Slack sends no delivery id outside the Events API: the signed timestamp and body identify a request.
        digest = hashlib.sha256(f"{verified.timestamp}:".encode() + body).hexdigest()[:32]
        event_id = f"slack-{digest}"
    return event_type, event_id, subject


def _path(data: Any, *parts: str) -> str | None:
    for part in parts:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data if isinstance(data, str) and data else None
