"""Who may use the web UI: every UI route has a scope, and a real `orch api` enforces it with the session.

The route table is read from the app, so a new page without a scope fails here. Then, against a live
`orch api` process: without a session every page sends the browser to the sign-in page (htmx requests get
HX-Redirect); a session whose token lacks the page's scope gets 403 naming it; with the scope, the page
serves. Signing in sets an HttpOnly, SameSite=Strict cookie; state-changing requests need the session's
CSRF token and a same-origin Origin; `next` never leads off the site; a revoked token ends its session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.api.app import create_app
from orchestrator.settings import Settings
from orchestrator.tokens import SCOPES
from orchestrator.ui.session import csrf_token

from ..e2e.conftest import Processes, create_token, orch, orch_env
from ..helpers import RedisServer, free_port, wait_for
from ..projects import make_project
from .test_api_auth import is_ui, routes

UI_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/"): "public",
    ("GET", "/ui/"): "public",
    ("GET", "/ui/login"): "public",
    ("POST", "/ui/login"): "public",
    ("GET", "/ui/static/{name}"): "public",
    ("POST", "/ui/logout"): "any-token",
    ("GET", "/ui/runs"): "runs:read",
    ("GET", "/ui/runs/rows"): "runs:read",
    ("GET", "/ui/runs/{run_id}"): "runs:read",
    ("GET", "/ui/runs/{run_id}/live"): "runs:read",
    ("GET", "/ui/runs/{run_id}/tasks/{node}"): "runs:read",
    ("GET", "/ui/runs/{run_id}/tasks/{node}/logs"): "runs:read",
    ("GET", "/ui/runs/{run_id}/confirm/{action}"): "runs:steer",
    ("POST", "/ui/runs/{run_id}/{action}"): "runs:steer",
    ("POST", "/ui/runs/{run_id}/tasks/{node}/approve"): "runs:steer",
    ("GET", "/ui/events"): "events:read",
    ("GET", "/ui/events/{entry_id}"): "events:read",
    ("GET", "/ui/rules"): "system:read",
    ("GET", "/ui/workflows"): "system:read",
    ("GET", "/ui/workflows/{name}"): "system:read",
    ("GET", "/ui/schedules"): "system:read",
    ("GET", "/ui/webhooks"): "system:read",
    ("GET", "/ui/watches"): "system:read",
    ("GET", "/ui/workers"): "system:read",
    ("GET", "/ui/workers/live"): "system:read",
}
# A request for each route that reaches its handler once allowed.
PATHS = {("GET", "/ui/runs/{run_id}"): "/ui/runs/nope", ("GET", "/ui/runs/{run_id}/live"): "/ui/runs/nope/live",
         ("GET", "/ui/runs/{run_id}/tasks/{node}"): "/ui/runs/nope/tasks/a",
         ("GET", "/ui/runs/{run_id}/tasks/{node}/logs"): "/ui/runs/nope/tasks/a/logs",
         ("GET", "/ui/runs/{run_id}/confirm/{action}"): "/ui/runs/nope/confirm/cancel",
         ("POST", "/ui/runs/{run_id}/{action}"): "/ui/runs/nope/cancel",
         ("POST", "/ui/runs/{run_id}/tasks/{node}/approve"): "/ui/runs/nope/tasks/a/approve", ("GET", "/ui/events/{entry_id}"): "/ui/events/1-0",
         ("GET", "/ui/static/{name}"): "/ui/static/orch.css", ("GET", "/ui/workflows/{name}"): "/ui/workflows/nope"}
GUARDED = [key for key, scope in UI_SCOPES.items() if scope != "public"]


def test_every_ui_route_declares_its_scope(tmp_path: Path) -> None:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", project=tmp_path))

    table = {key: scope for key, scope in routes(app).items() if is_ui(key[1])}

    assert table == UI_SCOPES, "a UI route was added or changed: give it a scope (ui_scoped) and list it here"
    assert all(scope in SCOPES or scope in ("public", "any-token") for scope in table.values())


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    server = RedisServer()
    project = make_project(tmp_path_factory.mktemp("ui-auth") / "project", rules="rules: []\n", workflows={})
    port = free_port()
    env = orch_env(server.url, project, ORCH_API_PORT=str(port))
    procs = Processes(env, tmp_path_factory.mktemp("ui-auth-logs"))
    procs.start("api", "api")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ok(f"{base}/healthz"), 30, "orch api to answer")
    yield base, env
    procs.stop_all()
    server.stop()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def client(base: str, token: str | None = None) -> httpx.Client:
    session = httpx.Client(base_url=base, timeout=10, follow_redirects=False)
    if token:
        session.cookies.set("orch_session", token, domain="127.0.0.1", path="/ui")
    return session


def send(base: str, key: tuple[str, str], token: str | None = None, **headers: str) -> httpx.Response:
    method, path = key[0], PATHS.get(key, key[1])
    data = {"csrf": csrf_token(token)} if method == "POST" and token else None
    with client(base, token) as session:
        return session.request(method, path, data=data, headers=headers)


@pytest.mark.parametrize("key", GUARDED, ids=[f"{m} {p}" for m, p in GUARDED])
def test_each_ui_route_signs_in_without_a_session_refuses_without_its_scope_and_serves_with_it(
        ui: tuple[str, dict[str, str]], key: tuple[str, str]) -> None:
    base, env = ui
    scope = UI_SCOPES[key]
    other = next(s for s in SCOPES if s not in (scope, "admin"))
    slug = re.sub(r"[^a-z0-9]+", "-", f"{key[0]} {key[1]}".lower()).strip("-")[:40]
    wrong = create_token(env, f"w-{slug}", other)
    right = create_token(env, f"r-{slug}", scope if scope in SCOPES else "runs:read")

    anonymous = send(base, key)
    forged = send(base, key, "orch_0123456789ab_" + "A" * 43)
    htmx = send(base, key, **{"HX-Request": "true"})
    lacking = send(base, key, wrong)
    allowed = send(base, key, right)

    for refused in (anonymous, forged):
        assert refused.status_code == 303 and refused.headers["location"].startswith("/ui/login?next="), refused.text
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"].startswith("/ui/login")
    if scope == "any-token":
        assert lacking.status_code == 303 and lacking.headers["location"] == "/ui/login"
    else:
        assert lacking.status_code == 403 and scope in lacking.text and "text/html" in lacking.headers["content-type"]
    assert allowed.status_code in (200, 303, 404), allowed.text
    assert not allowed.headers.get("location", "").startswith("/ui/login?"), "a token with the scope is let in"


def test_signing_in_sets_a_strict_httponly_session_and_never_leads_off_site(ui: tuple[str, dict[str, str]]) -> None:
    base, env = ui
    token = create_token(env, "signin", "runs:read")
    with client(base) as session, client(base) as other:
        bad = session.post("/ui/login", data={"token": "orch_0123456789ab_" + "B" * 43, "next": "/ui/runs"})
        good = session.post("/ui/login", data={"token": token, "next": "//evil.example/ui/"})
        outside = other.post("/ui/login", data={"token": token, "next": "https://evil.example/"})
        page = session.get("/ui/runs")

    assert bad.status_code == 401 and "not valid" in bad.text and "orch_session" not in bad.headers.get("set-cookie", "")
    cookie = good.headers["set-cookie"].lower()
    assert good.status_code == 303 and good.headers["location"] == "/ui/"
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    assert outside.headers["location"] == "/ui/"
    assert page.status_code == 200 and "signin" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]


def test_state_changing_requests_need_the_csrf_token_and_the_same_origin(ui: tuple[str, dict[str, str]]) -> None:
    base, env = ui
    token = create_token(env, "csrf", "runs:steer", "runs:read")
    with client(base, token) as session:
        missing = session.post("/ui/runs/nope/cancel", data={})
        wrong = session.post("/ui/runs/nope/cancel", data={"csrf": csrf_token("orch_0123456789ab_" + "C" * 43)})
        foreign = session.post("/ui/runs/nope/cancel", data={"csrf": csrf_token(token)},
                               headers={"Origin": "https://evil.example"})
        right = session.post("/ui/runs/nope/cancel", data={"csrf": csrf_token(token)})
        by_header = session.post("/ui/runs/nope/cancel", headers={"X-CSRF-Token": csrf_token(token)})

    for refused in (missing, wrong, foreign):
        assert refused.status_code == 403, refused.text
    assert "another site" in foreign.text
    assert right.status_code == 404 and "no run" in right.text  # past the CSRF check, to the steering itself
    assert by_header.status_code == 404


def test_a_revoked_token_ends_its_session(ui: tuple[str, dict[str, str]]) -> None:
    base, env = ui
    token = create_token(env, "to-revoke", "runs:read")
    with client(base, token) as session:
        assert session.get("/ui/runs").status_code == 200

        orch("tokens", "revoke", "to-revoke", env=env)

        def signed_out() -> Any:
            answer = session.get("/ui/runs")
            return answer if answer.status_code == 303 else None

        answer = wait_for(signed_out, 30, "the revoked token's session to end")
    assert answer.headers["location"].startswith("/ui/login?next=")


def test_assets_are_the_packages_own_files_only(ui: tuple[str, dict[str, str]]) -> None:
    base, _ = ui
    with client(base) as session:
        assert session.get("/ui/static/htmx.min.js").status_code == 200
        assert session.get("/ui/static/..%2Fsession.py").status_code == 404
        assert session.get("/ui/static/session.py").status_code == 404
        assert session.get("/").headers["location"] == "/ui/"


def test_sign_in_refuses_other_sites_large_forms_and_reflects_no_text(ui: tuple[str, dict[str, str]]) -> None:
    base, env = ui
    token = create_token(env, "forms", "runs:read")
    with client(base) as session:
        foreign = session.post("/ui/login", data={"token": token}, headers={"Origin": "https://evil.example"})
        huge = session.post("/ui/login", content=b"token=" + b"A" * 100_000,
                            headers={"content-type": "application/x-www-form-urlencoded"})
        phishing = session.get("/ui/login", params={"why": "Sign in at https://evil.example instead"})
        expired = session.get("/ui/login", params={"why": "expired"})

    assert foreign.status_code == 403 and "orch_session" not in foreign.headers.get("set-cookie", "")
    assert huge.status_code == 413
    assert "evil.example" not in phishing.text
    assert "no longer valid" in expired.text


def test_unreadable_records_in_redis_never_break_a_page(ui: tuple[str, dict[str, str]]) -> None:
    base, env = ui
    token = create_token(env, "hostile", "admin")
    import redis as redis_lib

    r = redis_lib.Redis.from_url(env["ORCH_REDIS_URL"])
    r.zadd("orch:runs", {"bogus": 1})
    r.hset("orch:run:bogus", "meta", b'{"status": 3}')
    r.xadd("orch:events", {"e": b"[1, 2]"})
    r.close()
    with client(base, token) as session:
        assert session.get("/ui/runs").status_code == 200
        assert session.get("/ui/runs", params={"cursor": "\u00b2:x"}).status_code == 200
        assert session.get("/ui/events").status_code == 200


def test_behind_an_https_proxy_forms_from_the_public_origin_pass_and_the_cookie_is_secure(
        ui: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    _, env = ui
    port = free_port()
    procs = Processes({**env, "ORCH_API_PORT": str(port), "ORCH_API_PUBLIC_URL": "https://orch.example.com"}, tmp_path)
    procs.start("api", "api")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ok(f"{base}/healthz"), 30, "the proxied orch api to answer")
        token = create_token(env, "proxied", "runs:steer", "runs:read")
        public = {"Origin": "https://orch.example.com"}
        with client(base) as session:
            signed_in = session.post("/ui/login", data={"token": token}, headers=public)
        with client(base, token) as session:
            steer = session.post("/ui/runs/nope/cancel", data={"csrf": csrf_token(token)}, headers=public)
            foreign = session.post("/ui/runs/nope/cancel", data={"csrf": csrf_token(token)},
                                   headers={"Origin": "https://evil.example"})
    finally:
        procs.stop_all()

    assert signed_in.status_code == 303 and "secure" in signed_in.headers["set-cookie"].lower()
    assert steer.status_code == 404 and "no run" in steer.text
    assert foreign.status_code == 403
