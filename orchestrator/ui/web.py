"""The UI's page rendering: Jinja2 templates shipped in the package (autoescaped), the context every
page gets (who is signed in, what they may see and do, the CSRF token) and strict security headers.

The Content-Security-Policy allows only the package's own scripts and styles (no inline script or
style, no CDN), so data shown on a page can never run as code in it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from .. import __version__
from ..api.auth import Principal
from .session import COOKIE, csrf_token
from .views import ago, duration

__all__ = ["HEADERS", "NAV", "STATIC", "can", "page", "templates"]

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["duration"] = duration
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False, default=str)
templates.env.filters["iso"] = lambda value: value.isoformat().replace("+00:00", "Z") if value else "–"
templates.env.filters["short"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S") if value else "–"

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

# (path, title, scope that shows it)
NAV = [("/ui/runs", "Runs", "runs:read"), ("/ui/events", "Events", "events:read"),
       ("/ui/rules", "Rules", "system:read"), ("/ui/workflows", "Workflows", "system:read"),
       ("/ui/schedules", "Schedules", "system:read"), ("/ui/webhooks", "Webhooks", "system:read"),
       ("/ui/watches", "Watches", "system:read"), ("/ui/workers", "Workers", "system:read")]


def can(principal: Principal | None, scope: str) -> bool:
    return principal is not None and bool(principal.scopes & {scope, "admin"})


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a page (or an htmx fragment) with the shared context and headers."""
    principal: Principal | None = getattr(request.state, "principal", None)
    token = request.cookies.get(COOKIE, "")
    now = datetime.now(UTC)
    shared = {"principal": principal, "csrf": csrf_token(token) if token else "", "version": __version__,
              "nav": [(path, title) for path, title, scope in NAV if can(principal, scope)],
              "can_steer": can(principal, "runs:steer"), "now": now, "ago": lambda when: ago(when, now),
              "path": request.url.path}
    response = templates.TemplateResponse(request, template, {**shared, **context}, status_code=status)
    response.headers.update(HEADERS)
    return response
