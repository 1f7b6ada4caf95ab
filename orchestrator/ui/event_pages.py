"""Events in the UI: the recent ones with their attributes and data, and for one event the rules it
matched, the runs they started, and why other rules listening to its type did not start one.

    GET /ui/events             events:read   recent events, newest first (?type= glob)
    GET /ui/events/{entry_id}  events:read   one event: attributes, data, the engine's decisions
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..events.decisions import EntryIdError, decisions_of, event_decisions
from ..events.recent import recent_events
from .session import ui_scoped
from .web import page

__all__ = ["router"]

router = APIRouter()
_CORE = ("entry_id", "received_at", "specversion", "id", "source", "type", "subject", "time", "datacontenttype",
         "dataschema", "data", "data_base64")


@router.get("/ui/events", **ui_scoped("events:read"))
def events(request: Request, type: str | None = Query(None, max_length=256),
           limit: int = Query(100, ge=1, le=1000)) -> Response:
    state = request.app.state.orch
    found = recent_events(state.redis, state.keys, limit=limit, type_glob=type or None)
    decided = decisions_of(state.redis, state.keys, [e["entry_id"] for e in found])
    return page(request, "events.html", events=found, decided=decided, type=type or "", limit=limit)


@router.get("/ui/events/{entry_id}", **ui_scoped("events:read"))
def event(request: Request, entry_id: str) -> Response:
    state = request.app.state.orch
    try:
        found = event_decisions(state.redis, state.keys, entry_id)
    except EntryIdError:
        found = None
    if found is None:
        return page(request, "error.html", status=404, title="No such event",
                    message=f"orch knows no event {entry_id!r}: it may have been trimmed and its decisions expired, "
                            f"or the id is mistyped.", back="/ui/events")
    record = found["event"] or {"entry_id": entry_id}
    extensions = {k: v for k, v in record.items() if k not in _CORE}
    return page(request, "event.html", event=record, extensions=extensions, state=found["state"],
                decisions=found["decisions"])
