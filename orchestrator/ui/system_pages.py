"""What the deployment is made of, in the UI: the project's rules, workflows (each with its graph),
schedules (next firings in UTC and in the schedule's zone, DST moves marked), webhooks (with deliveries
by result) and watches, from the catalogue the engine writes; and the live workers and queues.

    GET /ui/rules | /ui/workflows | /ui/schedules | /ui/webhooks | /ui/watches    system:read
    GET /ui/workflows/{name}                                                       system:read
    GET /ui/workers, /ui/workers/live (polled every 2 s)                           system:read
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..catalog import catalog_view, queues_view, workers_view
from .session import ui_scoped
from .views import catalog_graph
from .web import page

__all__ = ["router"]

router = APIRouter()
SCOPE = ui_scoped("system:read")
_SECTIONS = {"rules": "Rules", "workflows": "Workflows", "schedules": "Schedules", "hooks": "Webhooks",
             "watches": "Watches"}


def _catalog(request: Request) -> tuple[dict[str, Any] | None, str]:
    state = request.app.state.orch
    found = catalog_view(state.redis, state.keys, datetime.now(UTC))
    if found is None:
        return None, ("No engine has published the project yet: start `orch engine` (or `orch dev`), and this "
                      "page shows what it loaded.")
    if "error" in found:
        return None, str(found["error"])
    return found, ""


def _section(request: Request, section: str, template: str) -> Response:
    catalog, problem = _catalog(request)
    items = catalog[section] if catalog else []
    return page(request, template, title=_SECTIONS[section], items=items, problem=problem, catalog=catalog)


@router.get("/ui/rules", **SCOPE)
def rules(request: Request) -> Response:
    return _section(request, "rules", "rules.html")


@router.get("/ui/workflows", **SCOPE)
def workflows(request: Request) -> Response:
    return _section(request, "workflows", "workflows.html")


@router.get("/ui/workflows/{name}", **SCOPE)
def workflow(request: Request, name: str) -> Response:
    catalog, problem = _catalog(request)
    found = next((w for w in catalog["workflows"] if w["name"] == name), None) if catalog else None
    if found is None:
        return page(request, "error.html", status=404, title="No such workflow", back="/ui/workflows",
                    message=problem or f"The project has no workflow {name!r}.")
    rules = [r for r in catalog["rules"] if r["workflow"] == name] if catalog else []
    return page(request, "workflow.html", workflow=found, graph=catalog_graph(found["nodes"]), rules=rules)


@router.get("/ui/schedules", **SCOPE)
def schedules(request: Request) -> Response:
    return _section(request, "schedules", "schedules.html")


@router.get("/ui/webhooks", **SCOPE)
def webhooks(request: Request) -> Response:
    return _section(request, "hooks", "webhooks.html")


@router.get("/ui/watches", **SCOPE)
def watches(request: Request) -> Response:
    return _section(request, "watches", "watches.html")


def _fleet(request: Request) -> dict[str, Any]:
    state, now = request.app.state.orch, datetime.now(UTC)
    return {"workers": workers_view(state.redis, state.keys, now), "queues": queues_view(state.redis, state.keys, now)}


@router.get("/ui/workers", **SCOPE)
def workers(request: Request) -> Response:
    return page(request, "workers.html", **_fleet(request))


@router.get("/ui/workers/live", **SCOPE)
def workers_live(request: Request) -> Response:
    return page(request, "workers_live.html", **_fleet(request))
