"""`POST /hooks/{name}`: the APIRouter that `orch api` includes for a project's webhook endpoints.

Per request: unknown or disabled endpoint -> 404 (listing the endpoints); body read under the endpoint's
limit -> 413; signature checked on the raw bytes -> 401; body parsed and mapped -> 400/415/422; then one
publish script (dedup on (source, id) + XADD; concurrent requests' events in one call, see
events/coalesce.py) -> 202 once the event is in the stream, with
`"duplicate": true` for a delivery seen within the dedup window; Redis down -> 503 with Retry-After (the
app's handler). Each outcome counts in `orch_webhook_requests_total{hook,result}`, a Redis hash like every
other orch counter, so one scrape of any `orch api` sees every API process (`unavailable` is counted
only when Redis takes the increment; it may not).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import redis
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from orchestrator.api.app import ApiState
from orchestrator.api.auth import SIGNATURE, scoped
from orchestrator.api.routes import read_body
from orchestrator.api.schemas import Problem, WebhookAccepted, errors
from orchestrator.errors import EventError
from orchestrator.events.coalesce import Coalescer
from orchestrator.events.publish import AsyncPublisher
from orchestrator.metrics import WEBHOOK_REQUESTS, MetricsBatch

from .config import HookConfig, Scheme
from .mapping import Challenge, Rejected, build_event, parse_payload
from .secrets import HookSecrets
from .verify import SignatureError, verify

__all__ = ["ENVELOPE_BYTES", "UNKNOWN_HOOK", "create_router", "describe"]

log = logging.getLogger("orch.webhooks")

ENVELOPE_BYTES = 64 * 1024   # room for the CloudEvent attributes around a body at the endpoint's limit
UNKNOWN_HOOK = "(unknown)"   # the `hook` label of requests to no endpoint (names cannot hold parentheses)
TRIGGER = "webhook"          # the `trigger` label of orch_events_received_total
COUNT_FLUSH_S = 0.2          # request counts reach Redis this long after the first one of a burst


class _Hooks:
    """The endpoints, their secrets and, once bound to an app's state, their publishers and Redis."""

    def __init__(self, hooks: Mapping[str, HookConfig], secrets: Mapping[str, HookSecrets],
                 clock: Callable[[], float]) -> None:
        self.configs = {name: c for name, c in hooks.items() if c.enabled}
        self.disabled = sorted(name for name, c in hooks.items() if not c.enabled)
        missing = [name for name in self.configs if name not in secrets]
        if missing:
            raise ValueError(f"no secrets resolved for webhook endpoint(s) {', '.join(missing)}")
        self.keys = {name: secrets[name].keys for name in self.configs}
        self.clock = clock
        self.coalescers: dict[str, Coalescer] = {}  # concurrent requests' events go out together
        self._state: ApiState | None = None
        self._pending = MetricsBatch()  # request counts not yet written to Redis
        self._flusher: asyncio.Task[None] | None = None

    def bind(self, state: ApiState) -> None:
        """Publishers on the app's Redis client (once per app)."""
        if self._state is state:
            return
        default_window = state.settings.event_dedup_window_s
        self.coalescers = {
            name: Coalescer(AsyncPublisher(
                state.aredis, state.keys, dedup_window_s=config.dedup_window(default_window),
                max_bytes=max(state.settings.event_max_bytes, config.max_body_bytes + ENVELOPE_BYTES), trigger=TRIGGER))
            for name, config in self.configs.items()
        }
        self._state = state

    async def count(self, hook: str, result: str) -> None:
        """Count one request in `orch_webhook_requests_total{hook,result}`; never changes or delays the answer.

        Counts gather in memory and go to Redis (where every API process's scrape sees them) in one
        pipeline every COUNT_FLUSH_S, so a request costs no extra round trip.
        """
        self._pending.inc(WEBHOOK_REQUESTS, hook, result)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(COUNT_FLUSH_S)
        await self.flush_counts()

    async def flush_counts(self) -> None:
        batch, self._pending = self._pending, MetricsBatch()
        if not await self._flush(batch, timeout_s=2.0):
            self._pending.merge(batch)  # Redis unavailable: keep them for the next flush

    async def prime(self) -> None:
        """Show every endpoint's main series at 0 from the start (HINCRBY 0), so rates work at once."""
        batch = MetricsBatch()
        for name in self.configs:
            for result in ("accepted", "duplicate", "unauthorized"):
                batch.inc(WEBHOOK_REQUESTS, name, result, n=0)
        await self._flush(batch, timeout_s=5.0)

    async def _flush(self, batch: MetricsBatch, timeout_s: float | None) -> bool:
        """Write `batch`; False when Redis did not take it."""
        state = self._state
        if state is None or not batch:
            return True
        pipe = state.aredis.pipeline(transaction=False)
        batch.flush(pipe, state.keys)
        try:
            await asyncio.wait_for(pipe.execute(), timeout_s)
        except (redis.RedisError, TimeoutError) as exc:  # counting must never hide the outcome
            log.debug("webhook counter not updated: %s", exc)
            return False
        return True


def create_router(hooks: Mapping[str, HookConfig], secrets: Mapping[str, HookSecrets], *,
                  clock: Callable[[], float] = time.time) -> APIRouter:
    """The router serving `hooks` (enabled ones need their `secrets`; see `resolve_all`)."""
    state = _Hooks(hooks, secrets, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.bind(app.state.orch)
        await state.prime()
        yield
        await state.flush_counts()  # what the last requests counted

    router = APIRouter(lifespan=lifespan, tags=["webhooks"])

    @router.post("/hooks/{name}", status_code=202, summary="Receive a webhook (see the project's hooks:)",
                 response_model=WebhookAccepted, **scoped(SIGNATURE), responses={
                     200: {"description": "Slack's url_verification challenge, answered (nothing published)",
                           "content": {"application/json": {"schema": {"type": "object"}}}},
                     **errors(400, 404, 413, 415, 422, 503, e401="Missing, malformed or wrong signature, or a "
                              "stale timestamp"), 401: {"model": Problem, "description": "Missing, malformed or "
                                                        "wrong signature, or a stale timestamp"}})
    async def receive(name: str, request: Request) -> JSONResponse:
        config = state.configs.get(name)
        if config is None:
            state.bind(request.app.state.orch)
            await state.count(UNKNOWN_HOOK, "unknown_hook")
            return _not_found(name, state)
        api: ApiState = request.app.state.orch
        state.bind(api)
        start = time.perf_counter()
        try:
            response = await _handle(state, config, request)
        except redis.RedisError:
            await state.count(name, "unavailable")
            raise  # the app answers 503 with Retry-After
        if response.status_code == 202:
            api.ingest_seconds.labels(TRIGGER).observe(time.perf_counter() - start)
        return response

    return router


async def _handle(state: _Hooks, config: HookConfig, request: Request) -> JSONResponse:
    name = config.name
    try:
        body = await read_body(request, config.max_body_bytes)
        verified = verify(config.verify, request.headers, body, state.keys[name], now=state.clock(),
                          tolerance_s=config.tolerance_s, header=config.header)
        data = parse_payload(config, request.headers.get("content-type"), body)
        outcome = build_event(config, request.headers, data, body, verified, datetime.fromtimestamp(state.clock(), UTC))
    except SignatureError as exc:
        await state.count(name, "unauthorized")
        log.debug("webhook %s: refused: %s", name, exc)
        return JSONResponse({"error": str(exc), "hook": name}, status_code=401)
    except Rejected as exc:
        await state.count(name, "invalid")
        return JSONResponse({"error": str(exc), "field": exc.field, "hook": name}, status_code=exc.status)
    except EventError as exc:
        await state.count(name, "too_large" if exc.status_code == 413 else "invalid")
        return JSONResponse({"error": str(exc), "field": exc.field, "hook": name}, status_code=exc.status_code)
    if isinstance(outcome, Challenge):
        await state.count(name, "challenge")
        return JSONResponse(outcome.response, status_code=200)
    try:
        published = await state.coalescers[name].publish(outcome, len(body))
    except EventError as exc:  # the event with its envelope is over the size limit
        await state.count(name, "too_large" if exc.status_code == 413 else "invalid")
        return JSONResponse({"error": str(exc), "field": exc.field, "hook": name}, status_code=exc.status_code)
    await state.count(name, "duplicate" if published.duplicate else "accepted")
    return JSONResponse(_accepted(outcome.type, outcome.source, published.event_id, published.duplicate),
                        status_code=202)


def _accepted(event_type: str, source: str, event_id: str, duplicate: bool) -> dict[str, Any]:
    return {"id": event_id, "type": event_type, "source": source, "duplicate": duplicate}


def _not_found(name: str, state: _Hooks) -> JSONResponse:
    known = sorted(state.configs)
    if name in state.disabled:
        message = f"webhook endpoint {name!r} is disabled (enabled: false in the project)"
    else:
        listed = ", ".join(f"/hooks/{n}" for n in known) or "none (declare them under hooks: in the project's YAML)"
        message = f"no webhook endpoint {name!r}; endpoints: {listed}"
    return JSONResponse({"error": message, "hooks": known}, status_code=404)


def describe(hooks: Mapping[str, HookConfig]) -> list[str]:
    """One line per endpoint, for `orch api` to print at start (never a secret)."""
    lines = []
    for name, config in sorted(hooks.items()):
        if not config.enabled:
            lines.append(f"webhook POST /hooks/{name}: disabled")
            continue
        note = "  WARNING: unsigned requests are accepted" if config.verify is Scheme.NONE else ""
        lines.append(f"webhook POST /hooks/{name} (verify: {config.verify}, events {config.event_source}){note}")
    return lines
