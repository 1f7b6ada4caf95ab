"""GET /runs/{id}/logs: a run's task logs, as JSON, or followed live as Server-Sent Events.

    GET /runs/{id}/logs?task=&attempt=&after=&skip=     JSON: every task's latest attempt (or the task's,
                                                        or attempt N), each attempt's lines after `after`;
                                                        at most 100 attempts and 4 MiB of lines, from the
                                                        `skip`-th: `omitted` says what was left out
    GET /runs/{id}/logs?follow=true                     text/event-stream until the run ends (so does
        (or Accept: text/event-stream)                  Accept: text/event-stream without follow)

The stream's events, each `data` one JSON object:

    event: task    {"task", "attempt", "state"}              a followed task reached a new state or attempt
    event: lines   {"task", "attempt", "first", "next",      new lines of one attempt ("truncated": the
                    "dropped", "truncated", "lines"}          marker for lines dropped before this reader had them)
    event: notice  {"notice", "omitted"}                     attempts not followed (over the bound), once
    event: error   {"error"}                                 Redis does not answer; the stream goes on after
    event: end     {"status", "duration_s"}                  the run finished (or expired); the stream closes

The reading is orchestrator/workflows/logs.py (the UI calls it too); sse-starlette sends the events, a
comment every PING_S so proxies keep the connection, and cuts off a client that stops reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import redis
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from ..jsonutil import dumps
from ..workflows.logs import (
    FOLLOW_POLL_S,
    End,
    Lines,
    LogFollower,
    LogsNotFound,
    Notice,
    TaskProgress,
    read_logs,
)
from .app import ApiState
from .auth import scoped
from .schemas import errors

__all__ = ["router"]

router = APIRouter()

PING_S = 15.0
SEND_TIMEOUT_S = 30.0
EVENT_STREAM = "text/event-stream"


class AttemptLogBody(BaseModel):
    """The lines of one task attempt read by this request."""

    task: str
    attempt: int
    first: int = Field(description="The number of the first line in `lines` (an attempt's lines count from 0)")
    next: int = Field(description="Pass as `after` to get the lines that come after these")
    dropped: int = Field(description="Lines dropped (over the log's cap) before `first` that this read missed")
    dropped_bytes: int
    truncated: str | None = Field(description="The marker to show for the dropped lines, if any")
    closed: bool = Field(description="The worker closed this log: the attempt ended, no more lines will come")
    lines: list[str]


class OmittedBody(BaseModel):
    """The attempts this read left out (over 100 attempts or 4 MiB of lines)."""

    attempts: int
    skip: int = Field(description="Pass as `skip` to read on from the first attempt left out")
    hint: str


class RunLogsBody(BaseModel):
    """A run's task logs: each attempt read, in the run's task order."""

    run: str
    status: str
    attempts: list[AttemptLogBody]
    omitted: OmittedBody | None = Field(description="What was left out (null: nothing)")


_STREAM_DOC: dict[int | str, dict[str, Any]] = {200: {"description": "JSON (the default), or with follow=true or Accept: text/event-stream, "
                                    "Server-Sent Events (task, lines, notice, error, end) until the run ends",
                     "content": {EVENT_STREAM: {"schema": {"type": "string"}}}}}


@router.get("/runs/{run_id}/logs", tags=["runs"], response_model=RunLogsBody,
            summary="A run's task logs (each task's latest attempt, or one task's), or followed live (SSE)",
            responses={**_STREAM_DOC, **errors(401, 403, 404, 422, 503)}, **scoped("runs:read"))
async def get_run_logs(request: Request, run_id: str,
                       task: str | None = Query(None, max_length=128, description="only this task (a mapped "
                                                "task: each of its items)"),
                       attempt: int | None = Query(None, ge=1, le=1_000_000, description="this attempt "
                                                   "(default: the latest)"),
                       after: int = Query(0, ge=0, le=2**31, description="skip the lines a reader already has"),
                       skip: int = Query(0, ge=0, le=2**31, description="start at this attempt of those asked "
                                         "for (`omitted.skip` of the read before)"),
                       follow: bool = Query(False, description="stream the logs until the run ends")) -> Any:
    state: ApiState = request.app.state.orch
    if not (follow or EVENT_STREAM in request.headers.get("accept", "").lower()):
        try:  # blocking Redis calls: off the event loop
            found = await run_in_threadpool(read_logs, state.redis, state.keys, run_id, task, attempt, after,
                                           skip)
        except LogsNotFound as exc:
            return _not_found(exc)
        return JSONResponse(found.to_dict())
    follower = LogFollower(run_id, task, attempt, after, skip)
    try:  # the first poll says 404 / 422 before the stream starts
        first = await run_in_threadpool(follower.poll, state.redis, state.keys)
    except LogsNotFound as exc:
        return _not_found(exc)
    return EventSourceResponse(_events(state, follower, first), ping=PING_S, send_timeout=SEND_TIMEOUT_S)


@router.post("/runs/{run_id}/logs", include_in_schema=False, **scoped("runs:read"))
def post_run_logs(run_id: str) -> JSONResponse:
    """405, as for any other method the logs do not take: without this route, POST /runs/{id}/{action}
    (steering) would take the request and refuse `logs` as an action (422)."""
    return JSONResponse({"error": f"POST is not allowed on /runs/{run_id}/logs: use GET"}, status_code=405,
                        headers={"Allow": "GET"})


def _not_found(exc: LogsNotFound) -> JSONResponse:
    return JSONResponse({"error": str(exc), "field": "task" if exc.status == 422 else None}, status_code=exc.status)


async def _events(state: ApiState, follower: LogFollower, news: list[Lines | TaskProgress | Notice | End]
                  ) -> AsyncIterator[ServerSentEvent]:
    """The follower's news as events, polling until the run ends; Redis trouble is told once per outage."""
    failing = False
    while True:
        for item in news:
            yield _event(item)
        if follower.ended:
            return
        await asyncio.sleep(FOLLOW_POLL_S)
        try:
            news = await run_in_threadpool(follower.poll, state.redis, state.keys)
            failing = False
        except redis.RedisError as exc:
            news = []
            if not failing:
                failing = True
                yield ServerSentEvent(event="error", data=dumps({"error": f"Redis is unavailable ({exc}); "
                                                                          "retrying"}).decode())


def _event(item: Lines | TaskProgress | Notice | End) -> ServerSentEvent:
    if isinstance(item, Lines):
        name, body = "lines", item.log.to_dict()
    elif isinstance(item, TaskProgress):
        name, body = "task", {"task": item.node, "attempt": item.attempt, "state": item.state}
    elif isinstance(item, Notice):
        name, body = "notice", {"notice": item.text, "omitted": {"attempts": item.omitted}}
    else:
        name, body = "end", {"status": item.status, "duration_s": item.duration_s}
    return ServerSentEvent(event=name, data=dumps(body).decode())
