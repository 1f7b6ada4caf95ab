"""The web UI's entry points: `/` and `/ui/` lead to the runs, signing in and out, and the packaged assets.

    GET  /                  -> /ui/                              public (a redirect)
    GET  /ui/               -> /ui/runs                          public (a redirect)
    GET  /ui/login          the sign-in form                     public
    POST /ui/login          checks the token, sets the session   public (the token is the credential)
    POST /ui/logout         ends the session (CSRF-checked)      any token
    GET  /ui/static/{name}  htmx, dagre, orch.css, orch.js       public (the package's own files)

The pages themselves are in run_pages.py, event_pages.py and system_pages.py, each with its scope.
"""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from ..api.auth import AuthError, Principal
from .session import (
    COOKIE,
    REASONS,
    SignInNeeded,
    check_csrf,
    check_origin,
    safe_next,
    secure_cookies,
    session_cookie,
    sign_in_redirect,
    ui_scoped,
)
from .web import HEADERS, NAV, STATIC, can, page

__all__ = ["router", "sign_in_needed"]

router = APIRouter()
PUBLIC: dict[str, Any] = {"openapi_extra": {"x-orch-scope": "public"}, "include_in_schema": False}
ASSETS = frozenset(path.name for path in STATIC.iterdir() if path.is_file())


@router.get("/", **PUBLIC)
def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/", **PUBLIC)
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/runs", status_code=307)


@router.get("/ui/login", **PUBLIC)
def login_form(request: Request, next: str = "/ui/runs") -> Response:
    return page(request, "login.html", next=safe_next(next), error=REASONS.get(request.query_params.get("why", ""), ""))


@router.post("/ui/login", **PUBLIC)
async def login(request: Request, token: str = Form("", max_length=200), next: str = Form("/ui/runs")) -> Response:
    check_origin(request)  # a page of another site must not sign a browser in with its own token
    auth = request.app.state.orch.auth
    try:
        principal = await auth.principal(HTTPAuthorizationCredentials(scheme="Bearer", credentials=token.strip()),
                                         "any-token")
    except AuthError:
        return page(request, "login.html", status=401, next=safe_next(next),
                    error="That token is not valid: it is unknown, revoked or mistyped. "
                          "Create one with `orch tokens create --name NAME --scope runs:read`.")
    response = RedirectResponse(_landing(safe_next(next), principal), status_code=303)
    response.set_cookie(**session_cookie(token.strip(), secure=secure_cookies(request)))
    request.state.principal = principal
    return response


def _landing(target: str, principal: Principal) -> str:
    """Where a new session starts: where it was going, unless that is the default page and the token may
    not see it; then the first page it may see."""
    if target not in ("/ui/", "/ui/runs") or can(principal, "runs:read"):
        return target
    return next((path for path, _, scope in NAV if can(principal, scope)), target)


@router.post("/ui/logout", **ui_scoped("any-token"))
def logout(request: Request, csrf: str = Form("")) -> Response:
    check_csrf(request, csrf or request.headers.get("x-csrf-token"))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/ui/static/{name}", **PUBLIC)
def asset(name: str) -> Response:
    if name not in ASSETS:
        return Response(f"no asset {name!r}", status_code=404, media_type="text/plain")
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return FileResponse(STATIC / name, media_type=media, headers={"Cache-Control": "public, max-age=3600",
                                                                  "X-Content-Type-Options": "nosniff"})


async def sign_in_needed(request: Request, exc: SignInNeeded) -> Response:
    """No session: browsers go to the sign-in page; htmx requests are told to go there."""
    target = sign_in_redirect(exc.next_path) + (f"&why={quote(exc.reason)}" if exc.reason in REASONS else "")
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": target, **HEADERS})
    return RedirectResponse(target, status_code=303, headers=HEADERS)
