"""POST /runs/{id}/tasks/{task}/approve: a person approves a run's approval step (workflows/waiting.py).

The body is optional: `{"data": <JSON>}` becomes the step's result (an empty object without it). The
request is a steering request like cancel and retry (state/steer.py): checked here, applied by the
engine; the approver recorded in the run's steering log and in the step's `via` is the token's name.
The answer carries the request's id (`request`): once the step is resolved, its `via.request` says
whether this approval was applied, or another one sent just before it (`via.approved_by` names who).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..jsonutil import loads
from .app import ApiState
from .auth import principal_of, scoped
from .routes import _merge, read_body
from .schemas import Steered, errors

__all__ = ["router"]

router = APIRouter()

MAX_BODY_BYTES = 256 * 1024
_APPROVE_BODY = {"requestBody": {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"data": {"description": "any JSON: the approval step's result"}},
    "additionalProperties": False}}}}}


@router.post("/runs/{run_id}/tasks/{task}/approve", status_code=202, tags=["runs"], response_model=Steered,
             summary="Approve a run's approval step that is waiting (body {\"data\": ...}: its result)",
             responses=errors(400, 401, 403, 404, 409, 413, 422, 503),
             **_merge(scoped("runs:steer"), _APPROVE_BODY))
async def approve_task(request: Request, run_id: str, task: str) -> JSONResponse:
    from ..state.steer import SteeringError
    from ..state.steer import request as steer

    state: ApiState = request.app.state.orch
    body = await read_body(request, MAX_BODY_BYTES)
    data = None
    if body.strip():
        try:
            parsed = loads(body)
        except ValueError as exc:
            return JSONResponse({"error": f"the body is not valid JSON: {exc}"}, status_code=400)
        if not isinstance(parsed, dict) or set(parsed) - {"data"}:
            return JSONResponse({"error": "the body must be a JSON object like {\"data\": {...}}"}, status_code=422)
        data = parsed.get("data")
    try:  # blocking Redis calls: off the event loop
        steered = await run_in_threadpool(steer, state.redis, state.keys, state.runs, "approve", run_id,
                                          node=task, data=data, by=principal_of(request).name)
    except SteeringError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    return JSONResponse(steered.to_dict(), status_code=202)
