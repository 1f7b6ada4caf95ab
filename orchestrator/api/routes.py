"""Thin HTTP handlers over events, runs, health and metrics, each with its scope (auth.py) and its
documented answers (schemas.py)."""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as ApiPath
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from .. import __version__
from ..errors import EventTooLargeError
from ..events.decisions import ENTRY_ID_PATTERN, EntryIdError, event_decisions
from ..events.http import BATCH, STRUCTURED, parse_http_events
from ..events.recent import recent_events
from ..jsonutil import loads
from ..metrics import EVENTS_RECEIVED, MetricsBatch
from ..state.slots import read_pools
from ..workflows.runs import RunStatus
from .app import ApiState
from .auth import PUBLIC, principal_of, scoped
from .schemas import CLOUD_EVENT, Accepted, Health, Steered, errors

log = logging.getLogger(__name__)

router = APIRouter()

_EVENTS_BODY = {"requestBody": {"required": True, "description": (
    "Structured mode: one CloudEvent; batch mode: a JSON array of them. Binary mode (the body is the data, "
    "of any content type, with ce-specversion, ce-id, ce-source and ce-type headers) is accepted too."),
    "content": {STRUCTURED: {"schema": CLOUD_EVENT},
                BATCH: {"schema": {"type": "array", "items": CLOUD_EVENT, "maxItems": 1000}}}}}
_STEER_BODY = {"requestBody": {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"from": {"type": "string", "description": "rerun: reuse what does not "
                                              "depend on this task"}}}}}}}


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.orch
    return state


def _merge(scope: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {**scope, "openapi_extra": {**scope.get("openapi_extra", {}), **extra}}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) a declared or actual size over `limit` without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise EventTooLargeError(f"request body of {declared} bytes is over the limit of {limit} bytes", field="body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise EventTooLargeError(f"request body is over the limit of {limit} bytes", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/events", status_code=202, tags=["events"], response_model=Accepted,
             summary="Accept CloudEvents (structured, binary or batch mode)",
             responses=errors(400, 401, 403, 413, 415, 422, 503), **_merge(scoped("events:write"), _EVENTS_BODY))
async def post_events(request: Request) -> JSONResponse:
    state = _state(request)
    start = time.perf_counter()
    try:
        body = await read_body(request, state.settings.event_max_bytes)
        events = parse_http_events(request.headers.get("content-type"), request.headers, body)
    except ClientDisconnect:
        raise  # nobody sent anything to reject
    except Exception:
        await _count_rejected(state)
        raise
    if len(events) == 1:  # with the other requests' single events (events/coalesce.py)
        published = [await state.coalescer.publish(events[0], len(body))]
    else:
        published = await state.publisher.publish(events)
    state.ingest_seconds.labels("custom").observe(time.perf_counter() - start)
    return JSONResponse(
        {"ids": [p.event_id for p in published], "duplicates": [p.event_id for p in published if p.duplicate]},
        status_code=202,
    )


async def _count_rejected(state: ApiState) -> None:
    metrics = MetricsBatch()
    metrics.inc(EVENTS_RECEIVED, "custom", "rejected")
    pipe = state.aredis.pipeline(transaction=False)
    metrics.flush(pipe, state.keys)
    try:
        await pipe.execute()
    except Exception:  # noqa: BLE001 - counting must never hide the real error
        pass


@router.get("/events", tags=["events"], summary="Recent events, newest first", response_model=list[dict[str, Any]],
            responses=errors(401, 403, 422, 503), **scoped("events:read"))
def get_events(request: Request, limit: int = Query(50, ge=1, le=1000),
               type: str | None = Query(None, max_length=256,
                                        description="only events whose type matches this glob")) -> Any:
    state = _state(request)
    return recent_events(state.redis, state.keys, limit=limit, type_glob=type)


@router.get("/events/{entry_id}", tags=["events"], response_model=dict[str, Any],
            summary="One event (by stream entry id) with the rules it matched, the runs it started and why other "
                    "rules did not match", responses=errors(401, 403, 404, 422, 503), **scoped("events:read"))
def get_event(request: Request, entry_id: str = ApiPath(pattern=ENTRY_ID_PATTERN, max_length=39, description=(
        "The event's stream entry id, like 1717000000000-0 (`entry_id` in GET /events)"))) -> Any:
    state = _state(request)
    try:
        found = event_decisions(state.redis, state.keys, entry_id)
    except EntryIdError as exc:
        return JSONResponse({"error": str(exc), "field": "entry_id"}, status_code=422)
    if found is None:
        return JSONResponse({"error": f"no event at entry {entry_id!r} (it may have been trimmed; list events with "
                                      "GET /events)"}, status_code=404)
    return found


@router.get("/runs", tags=["runs"], summary="Runs, newest first", response_model=list[dict[str, Any]],
            responses=errors(401, 403, 422, 503), **scoped("runs:read"))
def get_runs(request: Request, status: RunStatus | None = None,
             workflow: str | None = Query(None, max_length=128), limit: int = Query(50, ge=1, le=1000)) -> Any:
    state = _state(request)
    return state.runs.list(status=str(status) if status else None, workflow=workflow, limit=limit)


@router.get("/slots", tags=["runs"], summary="Slot pools in use: holders with their lease, runs waiting",
            response_model=list[dict[str, Any]], responses=errors(401, 403, 422, 503), **scoped("runs:read"))
def get_slots(request: Request, rule: str | None = Query(None, max_length=128)) -> Any:
    state = _state(request)
    return read_pools(state.redis, state.keys, rule=rule)


@router.get("/runs/{run_id}", tags=["runs"], summary="One run with its tasks", response_model=dict[str, Any],
            responses=errors(401, 403, 404, 422, 503), **scoped("runs:read"))
def get_run(request: Request, run_id: str) -> Any:
    run = _state(request).runs.get(run_id)
    if run is None:
        return JSONResponse({"error": f"no run {run_id!r} (it may have expired; list runs with GET /runs)"},
                            status_code=404)
    return run.to_dict()


@router.post("/runs/{run_id}/{action}", status_code=202, tags=["runs"], response_model=Steered,
             summary="Steer a run: cancel, retry (failed tasks), rerun (a new run; body {\"from\": task})",
             responses=errors(400, 401, 403, 404, 409, 413, 422, 503),
             **_merge(scoped("runs:steer"), _STEER_BODY))
async def steer_run(request: Request, run_id: str, action: Literal["cancel", "retry", "rerun"]) -> JSONResponse:
    from ..state.steer import SteeringError
    from ..state.steer import request as steer

    state = _state(request)
    body = await read_body(request, 64 * 1024)
    from_node = None
    if body.strip():
        try:
            data = loads(body)
        except ValueError as exc:
            return JSONResponse({"error": f"the body is not valid JSON: {exc}"}, status_code=400)
        if not isinstance(data, dict) or not isinstance(data.get("from", ""), str | None):
            return JSONResponse({"error": "the body must be a JSON object like {\"from\": \"task\"}"},
                                status_code=422)
        from_node = data.get("from")
    try:  # blocking Redis calls: off the event loop, which also serves webhooks and /healthz
        steered = await run_in_threadpool(steer, state.redis, state.keys, state.runs, action, run_id,
                                          from_node=from_node, by=principal_of(request).name)
    except SteeringError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    return JSONResponse(steered.to_dict(), status_code=202)


@router.get("/healthz", tags=["health"], summary="Liveness: 200 when Redis answers", response_model=Health,
            responses={503: {"model": Health, "description": "Redis does not answer",
                             "headers": {"Retry-After": {"schema": {"type": "integer"}}}}}, **scoped(PUBLIC))
async def healthz(request: Request) -> JSONResponse:
    state = _state(request)
    try:
        info = await state.aredis.info("server")
    except Exception as exc:  # noqa: BLE001 - any failure to reach Redis is "unhealthy"
        # /healthz is public: the answer names the kind of failure, the log (for operators) the details
        log.warning("healthz: Redis does not answer: %s", exc)
        return JSONResponse({"status": "unavailable", "redis": {"ok": False, "error": type(exc).__name__}},
                            status_code=503, headers={"Retry-After": "5"})
    return JSONResponse({"status": "ok", "version": __version__,
                         "redis": {"ok": True, "version": info.get("redis_version")}})


@router.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format 0.0.4"}, **errors(401, 403, 503)},
            **scoped("metrics:read"))
def metrics(request: Request) -> Response:
    return Response(generate_latest(_state(request).registry), media_type=CONTENT_TYPE_LATEST)


__all__ = ["read_body", "router"]
