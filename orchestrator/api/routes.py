"""Thin HTTP handlers over events, runs, health and metrics."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import __version__
from ..errors import EventTooLargeError
from ..events.http import parse_http_events
from ..events.recent import recent_events
from ..jsonutil import loads
from ..metrics import EVENTS_RECEIVED, MetricsBatch
from ..workflows.runs import RunStatus
from .app import ApiState

router = APIRouter()


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.orch
    return state


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


@router.post("/events", status_code=202, tags=["events"],
             summary="Accept CloudEvents (structured, binary or batch mode)")
async def post_events(request: Request) -> JSONResponse:
    state = _state(request)
    start = time.perf_counter()
    try:
        body = await read_body(request, state.settings.event_max_bytes)
        events = parse_http_events(request.headers.get("content-type"), request.headers, body)
    except Exception:
        await _count_rejected(state)
        raise
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


@router.get("/events", tags=["events"], summary="Recent events, newest first")
def get_events(request: Request, limit: int = Query(50, ge=1, le=1000),
               type: str | None = Query(None, description="only events whose type matches this glob")) -> Any:
    state = _state(request)
    return recent_events(state.redis, state.keys, limit=limit, type_glob=type)


@router.get("/runs", tags=["runs"], summary="Runs, newest first")
def get_runs(request: Request, status: RunStatus | None = None, workflow: str | None = None,
             limit: int = Query(50, ge=1, le=1000)) -> Any:
    state = _state(request)
    return state.runs.list(status=str(status) if status else None, workflow=workflow, limit=limit)


@router.get("/runs/{run_id}", tags=["runs"], summary="One run with its tasks")
def get_run(request: Request, run_id: str) -> Any:
    run = _state(request).runs.get(run_id)
    if run is None:
        return JSONResponse({"error": f"no run {run_id!r} (it may have expired; list runs with GET /runs)"},
                            status_code=404)
    return run.to_dict()


@router.post("/runs/{run_id}/{action}", status_code=202, tags=["runs"],
             summary="Steer a run: cancel, retry (failed tasks), rerun (a new run; body {\"from\": task})")
async def steer_run(request: Request, run_id: str, action: str) -> JSONResponse:
    from ..state.steer import SteeringError
    from ..state.steer import request as steer

    state = _state(request)
    if action not in ("cancel", "retry", "rerun"):
        return JSONResponse({"error": f"unknown action {action!r}: use cancel, retry or rerun"}, status_code=404)
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
    try:
        steered = steer(state.redis, state.keys, state.runs, action, run_id, from_node=from_node,
                        by=request.headers.get("x-orch-user", "api"))
    except SteeringError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    return JSONResponse(steered.to_dict(), status_code=202)


@router.get("/healthz", tags=["health"], summary="Liveness: 200 when Redis answers")
async def healthz(request: Request) -> JSONResponse:
    state = _state(request)
    try:
        info = await state.aredis.info("server")
    except Exception as exc:  # noqa: BLE001 - any failure to reach Redis is "unhealthy"
        return JSONResponse({"status": "unavailable", "redis": {"ok": False, "error": str(exc)}},
                            status_code=503, headers={"Retry-After": "5"})
    return JSONResponse({"status": "ok", "version": __version__,
                         "redis": {"ok": True, "version": info.get("redis_version")}})


@router.get("/metrics", tags=["health"], summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    return Response(generate_latest(_state(request).registry), media_type=CONTENT_TYPE_LATEST)
