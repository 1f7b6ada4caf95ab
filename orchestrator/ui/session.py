"""Who is using the web UI: an API token, given once on the sign-in page and kept in a session cookie.

The cookie holds the token itself (HttpOnly, SameSite=Strict, Secure over https, path /ui), so the UI
checks it exactly as the API checks a bearer token: scopes, revocation within TOKEN_CACHE_S, the name
recorded as the actor of steering. Nothing is stored server-side.

Every state-changing request (steering, signing out) carries a CSRF token: an HMAC of the session's token,
sent as a form field or the `X-CSRF-Token` header, which a page on another site cannot compute or read.
Requests whose `Origin` names another host are refused as well.

    ui_scoped(scope)   the route's scope: no or a bad session -> 303 to the sign-in page (htmx: HX-Redirect);
                       a session without the scope -> 403 page naming the scope
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from ..api.auth import ANONYMOUS, AuthError, Principal
from ..tokens import SCOPES

__all__ = ["COOKIE", "REASONS", "CsrfError", "SignInNeeded", "check_csrf", "check_origin", "csrf_token", "safe_next",
           "secure_cookies", "session_cookie", "ui_scoped", "viewer"]

COOKIE = "orch_session"
SESSION_MAX_AGE_S = 12 * 3600
_CSRF_CONTEXT = b"orch-ui-csrf-v1"
# Why the sign-in page is shown: a code in its URL, never text from it (a link could carry any text).
REASONS = {"expired": "Your session's token is no longer valid (revoked, or the session ended): sign in again."}


class SignInNeeded(Exception):
    """No session, or its token is unknown, revoked or expired: the browser goes to the sign-in page."""

    def __init__(self, next_path: str, reason: str = "") -> None:
        super().__init__(reason)
        self.next_path, self.reason = next_path, reason


class CsrfError(Exception):
    """A state-changing request without the session's CSRF token, or from another origin."""


def csrf_token(token: str) -> str:
    """The CSRF token of a session: derived from its API token, so the server keeps nothing."""
    return hmac.new(token.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def safe_next(path: str | None) -> str:
    """Where to go after signing in: only a path inside the UI, never another site."""
    if not path or not path.startswith("/ui/") or path.startswith("//") or "\\" in path:
        return "/ui/"
    parts = urlsplit(path)
    return "/ui/" if parts.scheme or parts.netloc else path


def session_cookie(token: str, secure: bool) -> dict[str, Any]:
    """The arguments of `Response.set_cookie` for a session of `token`."""
    return {"key": COOKIE, "value": token, "max_age": SESSION_MAX_AGE_S, "path": "/ui", "httponly": True,
            "samesite": "strict", "secure": secure}


def _next_of(request: Request) -> str:
    target = request.headers.get("hx-current-url") if request.headers.get("hx-request") else None
    path = urlsplit(target).path if target else request.url.path
    query = urlsplit(target).query if target else request.url.query
    return safe_next(path + (f"?{query}" if query else ""))


async def viewer(request: Request) -> Principal | None:
    """The signed-in principal of a UI request, or None (no cookie, or a token that is not valid)."""
    auth = request.app.state.orch.auth
    if auth.disabled:
        return ANONYMOUS
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        found: Principal = await auth.principal(HTTPAuthorizationCredentials(scheme="Bearer", credentials=token),
                                                "any-token")
    except AuthError:
        return None
    return found


def public_url(request: Request) -> str | None:
    url: str | None = request.app.state.orch.settings.api_public_url
    return url


def secure_cookies(request: Request) -> bool:
    """Mark the session cookie Secure: served over https, or reached through an https proxy."""
    return request.url.scheme == "https" or (public_url(request) or "").startswith("https://")


def check_origin(request: Request) -> None:
    """Refuse a form sent from a page of another site (a browser says where the form came from)."""
    origin = request.headers.get("origin")
    if not origin:
        return
    allowed = {request.headers.get("host", "")} | ({urlsplit(public_url(request) or "").netloc} - {""})
    if urlsplit(origin).netloc not in allowed:
        raise CsrfError(f"this request came from another site ({origin}); use the orch UI itself (behind a proxy, "
                        f"set ORCH_API_PUBLIC_URL to the URL people use)")


def check_csrf(request: Request, sent: str | None) -> None:
    """Refuse a state-changing request from another origin or without the session's CSRF token."""
    check_origin(request)
    if request.app.state.orch.auth.disabled:
        return
    token = request.cookies.get(COOKIE, "")
    if not token or not sent or not hmac.compare_digest(sent, csrf_token(token)):
        raise CsrfError("this form has expired or did not come from the orch UI: reload the page and try again")


def ui_scoped(scope: str) -> dict[str, Any]:
    """Route keyword arguments for a UI page needing `scope` (an API scope, or "any-token"): the check,
    the `x-orch-scope` extension the route test reads, and no place in the OpenAPI schema."""
    if scope not in SCOPES and scope != "any-token":
        raise ValueError(f"unknown scope {scope!r}")

    async def check(request: Request) -> None:
        principal = await viewer(request)
        if principal is None:
            raise SignInNeeded(_next_of(request), "expired" if COOKIE in request.cookies else "")
        request.state.principal = principal  # the refusal page shows what this token may see
        if scope != "any-token" and not (principal.scopes & {scope, "admin"}):
            raise AuthError(403, f"token {principal.name!r} lacks scope {scope} (it has "
                                 f"{', '.join(sorted(principal.scopes))}); sign in with a token that has it", scope)
        request.state.principal = principal

    return {"dependencies": [Depends(check)], "openapi_extra": {"x-orch-scope": scope}, "include_in_schema": False}


def sign_in_redirect(next_path: str) -> str:
    return f"/ui/login?next={quote(next_path, safe='/')}"

