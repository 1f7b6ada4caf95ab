"""The runs the UI shows: the list (filters, search, pages, live rows), one run (its DAG, timeline,
event, rule and steering log), one task (logs, result, error with traceback, attempts), and steering
with a confirmation step.

    GET  /ui/runs                          runs:read   the list; ?status=&workflow=&rule=&since=&until=&q=&cursor=
    GET  /ui/runs/rows                     runs:read   the list's rows (htmx polls it while on the first page)
    GET  /ui/runs/{id}                     runs:read   one run
    GET  /ui/runs/{id}/live                runs:read   its graph, timeline and tasks (polled while it runs)
    GET  /ui/runs/{id}/tasks/{node}        runs:read   one task
    GET  /ui/runs/{id}/tasks/{node}/logs   runs:read   its logs (polled while it runs)
    GET  /ui/runs/{id}/confirm/{action}    runs:steer  "cancel this run?" with the button that does it
    POST /ui/runs/{id}/{action}            runs:steer  cancel, retry or rerun (CSRF-checked); then the run
    POST /ui/runs/{id}/tasks/{node}/approve runs:steer approve a waiting approval step (CSRF-checked), with
                                                       the JSON given as its result; then the task
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ..api.auth import principal_of
from ..jsonutil import loads
from ..state.browse import RunQuery, page_runs
from ..state.steer import SteeringError
from ..state.steer import request as steer
from ..workflows.runs import TERMINAL_STATES, Run, RunStatus
from .logview import task_logs
from .session import check_csrf, ui_scoped
from .views import duration, gantt, graph
from .web import page

__all__ = ["router"]

router = APIRouter()
Action = Literal["cancel", "retry", "rerun"]
_PAGE = 50


def _time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _query(request: Request) -> tuple[RunQuery, dict[str, str], Run | None]:
    """The list's query from the URL; a search for a run id that exists finds that run directly."""
    args = {k: v.strip()[:200] for k, v in request.query_params.items() if v.strip()}
    status = args.get("status") if args.get("status") in set(RunStatus) else None
    search = args.get("q")
    found = request.app.state.orch.runs.get(search) if search and search.isalnum() and len(search) <= 64 else None
    query = RunQuery(status=status, workflow=args.get("workflow"), rule=args.get("rule"),
                     event_id=search if search and found is None else None, since=_time(args.get("since")),
                     until=_time(args.get("until")), cursor=args.get("cursor"), limit=_PAGE)
    return query, args, found


def _took(meta: dict[str, Any]) -> dict[str, Any]:
    start, end = _time(meta.get("created_at")), _time(meta.get("finished_at"))
    return {**meta, "took": duration((end - start).total_seconds()) if start and end else ""}


def _list_context(request: Request) -> dict[str, Any]:
    query, args, found = _query(request)
    if found is not None:
        return {"runs": [_took(found.meta_dict())], "args": args, "next_cursor": None, "scanned": 0, "exhausted": False,
                "live": False, "statuses": list(RunStatus)}
    result = page_runs(request.app.state.orch.runs, query)
    return {"runs": [_took(meta) for meta in result.runs], "args": args, "next_cursor": result.next_cursor, "scanned": result.scanned,
            "exhausted": result.exhausted_scan, "live": not query.cursor, "statuses": list(RunStatus),
            "searched": query.event_id}


@router.get("/ui/runs", **ui_scoped("runs:read"))
def runs(request: Request) -> Response:
    return page(request, "runs.html", **_list_context(request))


@router.get("/ui/runs/rows", **ui_scoped("runs:read"))
def run_rows(request: Request) -> Response:
    return page(request, "run_rows.html", **_list_context(request))


def _run_or_404(request: Request, run_id: str) -> Run | Response:
    run: Run | None = request.app.state.orch.runs.get(run_id)
    if run is None:
        return page(request, "error.html", status=404, title="No such run",
                    message=f"There is no run {run_id!r}: it may have expired (runs are kept for the retention "
                            f"window) or the id is mistyped.")
    return run


def _run_context(run: Run) -> dict[str, Any]:
    now = datetime.now(UTC)
    bars, hidden = gantt(run, now)
    items = [task for task in run.tasks.values() if task.parent is None]
    return {"run": run, "graph": graph(run.spec, run), "bars": bars, "hidden_bars": hidden, "top_tasks": items,
            "finished": run.status not in (RunStatus.RUNNING, RunStatus.QUEUED),
            "failed_tasks": [t for t in run.tasks.values() if str(t.state) == "failed"]}


@router.get("/ui/runs/{run_id}", **ui_scoped("runs:read"))
def run_page(request: Request, run_id: str) -> Response:
    found = _run_or_404(request, run_id)
    if isinstance(found, Response):
        return found
    return page(request, "run.html", **_run_context(found))


@router.get("/ui/runs/{run_id}/live", **ui_scoped("runs:read"))
def run_live(request: Request, run_id: str) -> Response:
    found = _run_or_404(request, run_id)
    if isinstance(found, Response):
        return found
    return page(request, "run_live.html", **_run_context(found))


def _task_context(request: Request, run: Run, node: str, attempt: int | None) -> dict[str, Any] | None:
    task = run.tasks.get(node)
    if task is None:
        return None
    chosen = attempt if attempt is not None else task.attempt
    logs = task_logs(request.app.state.orch, run, task, chosen)
    return {"run": run, "task": task, "attempt": chosen, "logs": logs, "wait": run.spec.node(task.parent or node).wait,
            "items": run.items_of(node) if task.items else [],
            "running": task.state not in TERMINAL_STATES and run.status is RunStatus.RUNNING}


@router.get("/ui/runs/{run_id}/tasks/{node}", **ui_scoped("runs:read"))
def task_page(request: Request, run_id: str, node: str, attempt: int | None = Query(None, ge=0)) -> Response:
    found = _run_or_404(request, run_id)
    if isinstance(found, Response):
        return found
    context = _task_context(request, found, node, attempt)
    if context is None:
        return page(request, "error.html", status=404, title="No such task",
                    message=f"Run {run_id} has no task {node!r}.")
    return page(request, "task.html", **context)


@router.get("/ui/runs/{run_id}/tasks/{node}/logs", **ui_scoped("runs:read"))
def task_logs_fragment(request: Request, run_id: str, node: str, attempt: int | None = Query(None, ge=0)) -> Response:
    found = _run_or_404(request, run_id)
    if isinstance(found, Response):
        return found
    context = _task_context(request, found, node, attempt)
    if context is None:
        return Response(status_code=404)
    return page(request, "task_logs.html", **context)


@router.get("/ui/runs/{run_id}/confirm/{action}", **ui_scoped("runs:steer"))
def confirm(request: Request, run_id: str, action: Action, from_node: str | None = Query(None, alias="from")) -> Response:
    found = _run_or_404(request, run_id)
    if isinstance(found, Response):
        return found
    return page(request, "confirm.html", run=found, action=action, from_node=from_node)


@router.post("/ui/runs/{run_id}/{action}", **ui_scoped("runs:steer"))
async def steer_run(request: Request, run_id: str, action: Action, csrf: str = Form(""),
                    from_node: str = Form("", alias="from", max_length=200)) -> Response:
    check_csrf(request, csrf or request.headers.get("x-csrf-token"))
    state = request.app.state.orch
    try:
        steered = await run_in_threadpool(steer, state.redis, state.keys, state.runs, action, run_id,
                                          from_node=from_node or None, by=principal_of(request).name)
    except SteeringError as exc:
        run = state.runs.get(run_id)
        return page(request, "error.html", status=exc.status, title=f"Could not {action} the run",
                    message=str(exc), back=f"/ui/runs/{run_id}" if run else "/ui/runs")
    target = steered.new_run if steered.new_run else run_id
    return RedirectResponse(f"/ui/runs/{target}?steered={action}", status_code=303)


@router.post("/ui/runs/{run_id}/tasks/{node}/approve", **ui_scoped("runs:steer"))
async def approve_task(request: Request, run_id: str, node: str, csrf: str = Form(""),
                       data: str = Form("", max_length=64 * 1024)) -> Response:
    check_csrf(request, csrf or request.headers.get("x-csrf-token"))
    state = request.app.state.orch
    back = f"/ui/runs/{run_id}/tasks/{quote(node)}"
    try:
        value = loads(data) if data.strip() else None
    except ValueError as exc:
        return page(request, "error.html", status=422, title="Could not approve the task",
                    message=f"The data is not JSON: {exc}", back=back)
    try:
        await run_in_threadpool(steer, state.redis, state.keys, state.runs, "approve", run_id, node=node, data=value,
                                by=principal_of(request).name)
    except SteeringError as exc:
        return page(request, "error.html", status=exc.status, title="Could not approve the task", message=str(exc),
                    back=back)
    return RedirectResponse(f"{back}?steered=approve", status_code=303)
