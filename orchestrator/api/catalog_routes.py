"""GET /catalog and GET /workers: the project as the engine loaded it, and the workers and queues now.

Both need the `system:read` scope. `orch api` does not load the project's rules and workflows, so
/catalog answers what the engine last wrote to Redis (orchestrator/catalog): 404 before any engine
started, 503 when what Redis holds cannot be read (restarting the engine writes it again).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ..catalog import catalog_view, queues_view, workers_view
from ..catalog.store import NEXT_FIRINGS, NO_CATALOG
from .app import ApiState
from .auth import scoped
from .schemas import errors

__all__ = ["router"]

router = APIRouter()

_NO_CATALOG = "No engine has written the project catalogue yet (it does when it starts)"
_UNREADABLE = "The catalogue in Redis cannot be read (restart the engine), or Redis is unavailable"


@router.get("/catalog", tags=["system"], response_model=dict[str, Any],
            summary="The project's rules, workflows (graphs), schedules (next firings), webhooks (delivery "
                    "counts) and watches, as the engine loaded it",
            responses=errors(401, 403, 404, 422, 503, e404=_NO_CATALOG, e503=_UNREADABLE), **scoped("system:read"))
def get_catalog(request: Request, firings: int = Query(NEXT_FIRINGS, ge=0, le=100,
                                                       description="upcoming firings per schedule")) -> Any:
    state: ApiState = request.app.state.orch
    view = catalog_view(state.redis, state.keys, datetime.now(UTC), firings)
    if view is None:
        return JSONResponse({"error": NO_CATALOG}, status_code=404)
    if "error" in view:
        return JSONResponse(view, status_code=503, headers={"Retry-After": "5"})
    return view


@router.get("/workers", tags=["system"], response_model=dict[str, Any],
            summary="Live workers (the task each runs, for how long, heartbeats) and queues (depth, oldest job's "
                    "age, running, tasks finished per minute)",
            responses=errors(401, 403, 503), **scoped("system:read"))
def get_workers(request: Request) -> Any:
    state: ApiState = request.app.state.orch
    now = datetime.now(UTC)
    return {"workers": workers_view(state.redis, state.keys, now), "queues": queues_view(state.redis, state.keys, now)}
