"""`orch api`: the HTTP face of orch. The app factory wires state once; routes stay thin.

    POST /events          CloudEvents in structured, binary or batch mode -> 202 {"ids": [...]}  events:write
    GET  /events          recent events, newest first                                          events:read
    GET  /events/{entry}  one event, with the rules it matched, its runs, and why others did not  events:read
    GET  /runs            runs, newest first (?status=&workflow=&limit=)                       runs:read
    GET  /runs/{id}       one run with its tasks, states, timings, results and errors          runs:read
    GET  /runs/{id}/logs  its task logs, or followed live as Server-Sent Events (log_routes.py) runs:read
    POST /runs/{id}/...   cancel, retry, rerun                                                 runs:steer
    POST /runs/{id}/tasks/{task}/approve   approve an approval step (approval_routes.py)        runs:steer
    GET  /metrics         Prometheus text format                                               metrics:read
    GET  /catalog         rules, workflows, schedules, webhooks, watches (catalog_routes.py)   system:read
    GET  /workers         workers and queues (catalog_routes.py)                               system:read
    GET  /openapi.json    the OpenAPI schema                                                   any token
    GET  /healthz         200 when Redis answers, 503 otherwise                                public
    POST /hooks/{name}    webhooks (triggers/webhooks), authenticated by their signatures       signature

Roles (`orch api --role`): `all` serves everything; `operator` everything but /hooks; `hooks` only
/hooks/{name} and /healthz, so webhooks can be exposed to the internet without the operator API.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from .. import __version__
from ..connection import async_client_from_url, client_from_url, client_options, resolve_redis_url
from ..errors import EventError
from ..events.coalesce import Coalescer
from ..events.publish import AsyncPublisher
from ..metrics import QueueInspector, RedisCollector
from ..settings import Settings
from ..state.keys import Keys
from ..state.store import RunStore
from .auth import ANY_TOKEN, AuthError, Verifier, auth_error, scoped
from .middleware import RequestMetrics

__all__ = ["ROLES", "ApiState", "api_routes", "create_app"]

log = logging.getLogger(__name__)

ROLES = ("all", "operator", "hooks")


@dataclass
class ApiState:
    """Everything the routes share, built once per app."""

    settings: Settings
    keys: Keys
    redis: redis.Redis
    aredis: redis.asyncio.Redis
    publisher: AsyncPublisher
    coalescer: Coalescer  # the same publisher, for one-event requests (events/coalesce.py)
    runs: RunStore
    registry: CollectorRegistry
    ingest_seconds: Histogram
    auth: Verifier


def create_app(settings: Settings, *, queues: QueueInspector | None = None, role: str = "all",
               hooks: APIRouter | None = None) -> FastAPI:
    """The orch HTTP app for `settings` and `role`; `hooks` is the webhook router the entry point built."""
    from . import approval_routes, catalog_routes, log_routes, routes

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    state = _state(settings, queues)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await state.aredis.aclose()
        state.redis.close()

    app = FastAPI(title="orch", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, description="Event-driven workflow orchestrator: events in, runs out.")
    app.state.orch = state
    app.add_middleware(RequestMetrics, histogram=_request_histogram(state.registry))
    if role != "hooks":
        app.include_router(log_routes.router)  # first: POST /runs/{id}/logs is not a steering action
        app.include_router(routes.router)
        app.include_router(approval_routes.router)
        app.include_router(catalog_routes.router)
        app.include_router(_openapi_router(app))
    else:
        app.add_api_route("/healthz", routes.healthz, methods=["GET"], tags=["health"],
                          summary="Liveness: 200 when Redis answers", openapi_extra={"x-orch-scope": "public"})
    if hooks is not None and role != "operator":
        app.include_router(hooks)
    for kind, handler in ((EventError, _event_error), (redis.RedisError, _redis_error),
                          (RequestValidationError, _invalid), (AuthError, auth_error),
                          (StarletteHTTPException, _http_error), (ClientDisconnect, _gone)):
        app.add_exception_handler(kind, handler)
    if role != "hooks":
        from ..ui import install

        install(app)
    return app


def api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every route of an app, through the routers it includes (FastAPI wraps each in an included router)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes)
        else:
            raise TypeError(f"{route!r} is not an APIRoute: every route of orch api is one, with a scope")


async def _gone(request: Request, exc: Any) -> Response:
    """The client went away (or was cut off for sending too slowly, see server.py): nobody to answer."""
    log.debug("%s %s: the client disconnected before its request was read", request.method, request.url.path)
    return Response(status_code=499)


async def _http_error(request: Request, exc: Any) -> JSONResponse:
    """Starlette's own answers (404, 405) in orch's shape; a 405 lists every method the path has."""
    if exc.status_code == 405:
        path = request.url.path
        allowed = _allowed(request.app.routes, path)
        return JSONResponse({"error": f"{request.method} is not allowed on {path}: use {', '.join(allowed)}"},
                            status_code=405, headers={"Allow": ", ".join(allowed)})
    if exc.status_code == 404:
        return JSONResponse({"error": f"no route {request.url.path}"}, status_code=404)
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


def _allowed(routes: Iterable[Any], path: str) -> list[str]:
    """The methods the documented routes of `path` take: of those whose template fits it most closely, so
    /runs/{id}/logs lists its own methods, not /runs/{id}/{action}'s."""
    matching = [r for r in api_routes(routes) if r.include_in_schema and r.path_regex.match(path)]
    fewest = min((len(r.param_convertors) for r in matching), default=0)
    return sorted({m for r in matching if len(r.param_convertors) == fewest for m in r.methods or ()})


def _state(settings: Settings, queues: QueueInspector | None) -> ApiState:
    url = resolve_redis_url(settings)
    keys = Keys(settings.key_prefix)
    sync_redis = client_from_url(url, **client_options(settings))
    async_redis = async_client_from_url(url, **client_options(settings))
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(RedisCollector(sync_redis, keys, queues, version=__version__))
    publisher = AsyncPublisher(async_redis, keys, dedup_window_s=settings.event_dedup_window_s,
                               max_bytes=settings.event_max_bytes)
    return ApiState(
        settings=settings, keys=keys, redis=sync_redis, aredis=async_redis, publisher=publisher,
        coalescer=Coalescer(publisher),
        runs=RunStore(sync_redis, keys, retention_s=settings.run_retention_s), registry=registry,
        ingest_seconds=Histogram("orch_event_ingest_duration_seconds",
                                 "Time to accept events over HTTP, from request to durable XADD.", ["trigger"],
                                 registry=registry),
        auth=Verifier(async_redis, keys, disabled=settings.api_auth == "none"),
    )


def _request_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("http_server_request_duration_seconds", "HTTP requests served by orch api.",
                     ["method", "route", "status_code"], registry=registry)


def _openapi_router(app: FastAPI) -> APIRouter:
    router = APIRouter()

    @router.get("/openapi.json", tags=["health"], summary="The OpenAPI schema of this API", include_in_schema=False,
                **scoped(ANY_TOKEN))
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    return router


async def _event_error(request: Request, exc: Any) -> JSONResponse:
    return JSONResponse({"error": str(exc), "field": exc.field}, status_code=exc.status_code)


async def _invalid(request: Request, exc: Any) -> JSONResponse:
    problems = exc.errors()
    first = problems[0] if problems else {}
    field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header"))
    text = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in problems[:5])
    return JSONResponse({"error": f"invalid request: {text}", "field": field or None}, status_code=422)


async def _redis_error(request: Request, exc: Any) -> JSONResponse:
    return JSONResponse({"error": f"Redis is unavailable: {exc}. Nothing was accepted; retry later."},
                        status_code=503, headers={"Retry-After": "5"})
