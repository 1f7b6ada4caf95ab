"""Events in the UI: the recent ones with their attributes and data, and for one event the runs it
started.

    GET /ui/events             events:read   recent events, newest first (?type= glob)
    GET /ui/events/{entry_id}  events:read   one event: attributes, data, the runs it started
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..events.recent import recent_events, record_or_none
from .session import ui_scoped
from .web import page

__all__ = ["router"]

router = APIRouter()
_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_CORE = ("entry_id", "received_at", "specversion", "id", "source", "type", "subject", "time", "datacontenttype",
         "dataschema", "data", "data_base64")


@router.get("/ui/events", **ui_scoped("events:read"))
def events(request: Request, type: str | None = Query(None, max_length=256),
           limit: int = Query(100, ge=1, le=1000)) -> Response:
    state = request.app.state.orch
    found = recent_events(state.redis, state.keys, limit=limit, type_glob=type or None)
    return page(request, "events.html", events=found, type=type or "", limit=limit)


@router.get("/ui/events/{entry_id}", **ui_scoped("events:read"))
def event(request: Request, entry_id: str) -> Response:
    state = request.app.state.orch
    rows = state.redis.xrange(state.keys.events, min=entry_id, max=entry_id) if _ENTRY_ID.match(entry_id) else []
    record = record_or_none(entry_id, rows[0][1]) if rows else None
    if record is None:
        return page(request, "error.html", status=404, title="No such event",
                    message=f"The events stream holds no event {entry_id!r}: it may have been trimmed, or the id is "
                            f"mistyped.", back="/ui/events")
    extensions = {k: v for k, v in record.items() if k not in _CORE}
    return page(request, "event.html", event=record, extensions=extensions, decisions=None)
