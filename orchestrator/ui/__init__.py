"""The web UI served by `orch api` under /ui: server-rendered pages (Jinja2) made live with htmx, the
workflow graphs laid out by dagre; every asset ships in this package."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..api.auth import AuthError, auth_error
from .session import CsrfError, SignInNeeded

__all__ = ["MAX_FORM_BYTES", "FormLimit", "install"]

MAX_FORM_BYTES = 16 * 1024


def install(app: FastAPI) -> None:
    """Add the UI's routes and error pages to the app."""
    from . import event_pages, routes, run_pages, system_pages

    for module in (routes, run_pages, event_pages, system_pages):
        app.include_router(module.router)
    app.add_exception_handler(SignInNeeded, routes.sign_in_needed)  # type: ignore[arg-type]
    app.add_exception_handler(CsrfError, _csrf_error)
    app.add_exception_handler(AuthError, _auth_error)
    app.add_middleware(FormLimit)


class FormLimit:
    """Refuse the UI's form posts over MAX_FORM_BYTES, or of unknown size, before anything parses them: the
    sign-in form is public, and a form parser would otherwise read a large body into memory."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/ui/"):
            headers = dict(scope["headers"])
            length = headers.get(b"content-length", b"0" if b"transfer-encoding" not in headers else b"")
            if not length.isdigit() or int(length) > MAX_FORM_BYTES:
                answer = PlainTextResponse(f"a form of the orch UI is at most {MAX_FORM_BYTES} bytes, with a "
                                           f"Content-Length", status_code=413)
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _csrf_error(request: Request, exc: Any) -> Response:
    from .web import page

    return page(request, "error.html", status=403, title="Refused", message=str(exc))


async def _auth_error(request: Request, exc: Any) -> Response | JSONResponse:
    """A UI page the token may not see gets a page saying which scope it needs; the API keeps JSON."""
    if not request.url.path.startswith("/ui/"):
        return await auth_error(request, exc)
    from .web import page

    return page(request, "error.html", status=exc.status, title="Not allowed", message=str(exc))
