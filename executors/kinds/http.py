"""The `http` kind: one HTTP request with httpx.

Options (the task's keyword arguments):

    url                  http:// or https:// (required)
    method               GET (default), POST, PUT, PATCH, DELETE, HEAD or OPTIONS
    headers              a mapping of header names to strings
    params               query parameters (strings, numbers, booleans or lists of them)
    json                 a JSON body
    max_response_bytes   the largest body accepted, counted while it streams in (default 1 MiB)
    timeout_s            httpx's connect / read / write timeout (default and cap: the attempt's time left)
    follow_redirects     default true
    idempotency_key      send the attempt's key as `Idempotency-Key` (default true; a header given in
                         `headers` wins). The key is the same on every retry of the task in its run.

The result is `{"status": 200, "headers": {...}, "body": ...}`: `headers` holds the few that matter
(content-type, content-length, location, etag, last-modified, retry-after), `body` is the parsed JSON
when the content type is JSON (application/json or +json), the text otherwise, None when empty.

A non-2xx status fails with HTTPStatusError: 4xx are final (`retryable=False`), except 408 and 429
which, like 5xx, may be retried. Network errors (refused, reset, timed out) fail with httpx's class
name as error type (ConnectError, ReadTimeout, ...) and may be retried; an invalid URL is final. A body
over `max_response_bytes` fails with ResponseTooLarge. Logs name the URL without its query string.

Destinations: every connection, redirects included, goes through the attempt's egress policy
(`executors.kinds.egress`): by default only globally routable addresses, checked on the address the
name resolved to, which is the one connected to; `ORCH_HTTP_ALLOW` opens host names, IPs and CIDR
blocks. A refused destination fails with DestinationRefused (final). The client ignores the
environment (`trust_env=False`): an HTTP(S)_PROXY would make the connection for us, out of the
policy's sight, and a `.netrc` would add credentials nobody asked for.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from orchestrator.context import TaskTimeout
from orchestrator.jsonutil import loads

from ..attempt import Attempt
from .egress import EgressTransport
from .errors import DestinationRefused, HTTPStatusError, InvalidTaskOptions, ResponseTooLarge, TaskFailure

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "HTTPOptions", "response_body", "run_http"]

DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
RESULT_HEADERS = ("content-type", "content-length", "location", "etag", "last-modified", "retry-after")
OPTIONS = ("url", "method", "headers", "params", "json", "max_response_bytes", "timeout_s", "follow_redirects",
           "idempotency_key")
_FINAL_TRANSPORT_ERRORS = (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.TooManyRedirects)


@dataclass(frozen=True)
class HTTPOptions:
    """An http task's options, checked."""

    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    timeout_s: float | None = None
    follow_redirects: bool = True
    idempotency_key: bool = True

    @classmethod
    def parse(cls, args: list[Any], kwargs: Mapping[str, Any]) -> HTTPOptions:
        if args:
            raise InvalidTaskOptions(f"an http task takes keyword options only ({', '.join(OPTIONS)})")
        unknown = sorted(set(kwargs) - set(OPTIONS))
        if unknown:
            raise InvalidTaskOptions(f"unknown http option(s) {', '.join(unknown)} (options: {', '.join(OPTIONS)})")
        url = kwargs.get("url")
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise InvalidTaskOptions("http option 'url' must be an http:// or https:// URL")
        try:
            httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise InvalidTaskOptions(f"http option 'url' is not a valid URL: {exc}") from None
        method = kwargs.get("method", "GET")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise InvalidTaskOptions(f"http option 'method' must be one of {', '.join(METHODS)}")
        headers = kwargs.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                       for k, v in headers.items()):
            raise InvalidTaskOptions("http option 'headers' must map header names to strings")
        params = kwargs.get("params") or {}
        if not isinstance(params, Mapping) or not all(
                isinstance(k, str) and (_scalar(v) or isinstance(v, list) and all(_scalar(i) for i in v))
                for k, v in params.items()):
            raise InvalidTaskOptions("http option 'params' must map names to strings, numbers, booleans or lists "
                                     "of them")
        return cls(url=url, method=method.upper(), headers=dict(headers), params=dict(params),
                   json=kwargs.get("json"),
                   max_response_bytes=_positive(kwargs, "max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES, int),
                   timeout_s=_positive(kwargs, "timeout_s", None, float),
                   follow_redirects=_flag(kwargs, "follow_redirects"), idempotency_key=_flag(kwargs, "idempotency_key"))


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _positive(kwargs: Mapping[str, Any], name: str, default: Any, kind: type) -> Any:
    value = kwargs.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0 or (kind is int and
                                                                                      value != int(value)):
        raise InvalidTaskOptions(f"http option {name!r} must be a positive {'integer' if kind is int else 'number'}")
    return kind(value)


def _flag(kwargs: Mapping[str, Any], name: str) -> bool:
    value = kwargs.get(name, True)
    if not isinstance(value, bool):
        raise InvalidTaskOptions(f"http option {name!r} must be true or false")
    return value


def _shown(url: httpx.URL | str) -> str:
    """The URL as logs and errors show it: without its query string or credentials."""
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(query=None, fragment=None, userinfo=b""))


def response_body(content_type: str, body: bytes, encoding: str | None) -> Any:
    """The body for the result: parsed JSON for a JSON content type, text otherwise, None when empty."""
    if not body:
        return None
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            return loads(body)
        except ValueError:
            pass  # not the JSON it claims to be: keep it as text
    return body.decode(encoding or "utf-8", "replace")


def _read(response: httpx.Response, limit: int, deadline: float, what: str) -> bytes:
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ResponseTooLarge(f"{what}: the response announces {length} bytes, over max_response_bytes={limit}")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise ResponseTooLarge(f"{what}: the response is over max_response_bytes={limit}")
        if time.monotonic() > deadline:
            raise TaskTimeout(f"{what}: the response was still arriving at the time limit")
    return bytes(body)


@functools.cache
def _tls() -> ssl.SSLContext:
    # Built once per worker: loading the CA bundle is most of the cost of a new client.
    return httpx.create_ssl_context()


def run_http(attempt: Attempt) -> dict[str, Any]:
    """Send the attempt's request and return the response; see the module docstring."""
    options = HTTPOptions.parse(attempt.args, attempt.kwargs)
    ctx = attempt.ctx
    deadline = time.monotonic() + attempt.timeout_s
    timeout_s = min(options.timeout_s or attempt.timeout_s, attempt.timeout_s)
    headers = dict(options.headers)
    if options.idempotency_key and ctx.key and "idempotency-key" not in {h.lower() for h in headers}:
        headers["Idempotency-Key"] = ctx.key
    what = f"{options.method} {_shown(options.url)}"
    started = time.monotonic()
    try:
        transport = EgressTransport(attempt.egress, verify=_tls())
        with httpx.Client(transport=transport, timeout=timeout_s, follow_redirects=options.follow_redirects,
                          trust_env=False) as client:
            with client.stream(options.method, options.url, headers=headers, params=options.params,
                               json=options.json) as response:
                body = _read(response, options.max_response_bytes, deadline, what)
    except DestinationRefused as exc:
        raise DestinationRefused(f"{what}: {exc}") from None
    except _FINAL_TRANSPORT_ERRORS as exc:
        raise TaskFailure(f"{what}: {exc}", error_type=type(exc).__name__, retryable=False) from exc
    except httpx.TransportError as exc:
        raise TaskFailure(f"{what}: {type(exc).__name__}: {exc}", error_type=type(exc).__name__,
                          retryable=True) from exc
    except httpx.HTTPError as exc:
        raise TaskFailure(f"{what}: {exc}", error_type=type(exc).__name__) from exc
    status = response.status_code
    ctx.logger.info("%s -> %d %s (%d bytes, %.0f ms)", what, status, response.reason_phrase, len(body),
                    (time.monotonic() - started) * 1000)
    result = {"status": status,
              "headers": {name: response.headers[name] for name in RESULT_HEADERS if name in response.headers},
              "body": response_body(response.headers.get("content-type", ""), body, response.charset_encoding)}
    if not 200 <= status < 300:
        excerpt = body[:300].decode("utf-8", "replace")
        raise HTTPStatusError(f"{what} -> {status} {response.reason_phrase}" + (f": {excerpt}" if excerpt else ""),
                              status=status)
    return result
