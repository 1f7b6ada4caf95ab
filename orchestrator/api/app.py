"""`orch api`: the HTTP face of orch. The app factory wires state once; routes stay thin.

    POST /events          CloudEvents in structured, binary or batch mode -> 202 {"ids": [...]}
    GET  /events          recent events, newest first
    GET  /runs            runs, newest first (?status=&workflow=&limit=)
    GET  /runs/{id}       one run with its tasks, states, timings, results and errors
    GET  /healthz         200 when Redis answers, 503 otherwise
    GET  /metrics         Prometheus text format
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector

from .. import __version__
from ..connection import resolve_redis_url
from ..errors import EventError
from ..events.publish import AsyncPublisher
from ..metrics import QueueInspector, RedisCollector
from ..settings import Settings
from ..state.keys import Keys
from ..state.store import RunStore
from .middleware import RequestMetrics

__all__ = ["ApiState", "create_app"]


@dataclass
class ApiState:
    """Everything the routes share, built once per app."""

    settings: Settings
    keys: Keys
    redis: redis.Redis
    aredis: redis.asyncio.Redis
    publisher: AsyncPublisher
    runs: RunStore
    registry: CollectorRegistry
    ingest_seconds: Histogram


def create_app(settings: Settings, *, queues: QueueInspector | None = None,
               routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The orch HTTP app for `settings`; `routers` are extra routes wired in by the entry point."""
    from . import routes

    url = resolve_redis_url(settings)
    keys = Keys(settings.key_prefix)
    sync_redis = redis.Redis.from_url(url, health_check_interval=30)
    async_redis = redis.asyncio.Redis.from_url(url, health_check_interval=30)
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(RedisCollector(sync_redis, keys, queues, version=__version__))
    request_seconds = Histogram("http_server_request_duration_seconds", "HTTP requests served by orch api.",
                                ["method", "route", "status_code"], registry=registry)
    state = ApiState(
        settings=settings,
        keys=keys,
        redis=sync_redis,
        aredis=async_redis,
        publisher=AsyncPublisher(async_redis, keys, dedup_window_s=settings.event_dedup_window_s,
                                 max_bytes=settings.event_max_bytes),
        runs=RunStore(sync_redis, keys, retention_s=settings.run_retention_s),
        registry=registry,
        ingest_seconds=Histogram("orch_event_ingest_duration_seconds",
                                 "Time to accept events over HTTP, from request to durable XADD.", ["trigger"],
                                 registry=registry),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await async_redis.aclose()
        sync_redis.close()

    app = FastAPI(title="orch", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Event-driven workflow orchestrator: events in, runs out.")
    app.state.orch = state
    app.add_middleware(RequestMetrics, histogram=request_seconds)
    app.include_router(routes.router)
    for router in routers:
        app.include_router(router)
    app.add_exception_handler(EventError, _event_error)
    app.add_exception_handler(redis.RedisError, _redis_error)
    return app


async def _event_error(request: Request, exc: Any) -> JSONResponse:
    return JSONResponse({"error": str(exc), "field": exc.field}, status_code=exc.status_code)


async def _redis_error(request: Request, exc: Any) -> JSONResponse:
    return JSONResponse({"error": f"Redis is unavailable: {exc}. Nothing was accepted; retry later."},
                        status_code=503, headers={"Retry-After": "5"})
