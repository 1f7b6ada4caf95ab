"""Who may call `orch api`: every route has a scope, and a real `orch api` enforces it.

The route table is read from the app itself, so a new route without a scope fails here. Then every
route of a live `orch api` process is called without a token (401), with a token lacking the scope (403)
and with one that has it; the bodies say which scope is needed. Also: the actor of a steering request is
the token's name whatever the headers say, a revoked token stops working, roles expose only their routes,
ORCH_API_AUTH=none is refused off loopback, and Redis holds no token, only hashes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from orchestrator.api.app import api_routes, create_app
from orchestrator.api.auth import ANY_TOKEN, PUBLIC, SIGNATURE
from orchestrator.settings import Settings
from orchestrator.tokens import SCOPES

from ..e2e.conftest import Processes, create_token, orch, orch_env
from ..helpers import RedisServer, free_port, wait_for
from ..projects import make_project

RULES = """
rules:
  - {name: say, type: say.requested, workflow: say, params: {word: "{{ data.word }}"}}
hooks:
  - {name: open, verify: none}
"""
WORKFLOWS = {"say": """
    import time
    from orchestrator import task, workflow

    @task
    def say(word: str) -> str:
        time.sleep(30)
        return word

    @workflow
    def say_it(word: str):
        say(word)
"""}
RULES = RULES.replace("workflow: say,", "workflow: say_it,")

# Every route with a request that reaches its handler once authorized: (method, path, body).
CALLS: dict[tuple[str, str], tuple[str, str, Any]] = {
    ("POST", "/events"): ("POST", "/events", {"specversion": "1.0", "id": "a-1", "source": "/t", "type": "t"}),
    ("GET", "/events"): ("GET", "/events", None),
    ("GET", "/events/{entry_id}"): ("GET", "/events/1-0", None),
    ("GET", "/runs"): ("GET", "/runs", None),
    ("GET", "/runs/{run_id}"): ("GET", "/runs/nope", None),
    ("GET", "/slots"): ("GET", "/slots", None),
    ("GET", "/runs/{run_id}/logs"): ("GET", "/runs/nope/logs", None),
    ("POST", "/runs/{run_id}/logs"): ("POST", "/runs/nope/logs", None),  # 405, not a steering action
    ("POST", "/runs/{run_id}/{action}"): ("POST", "/runs/nope/cancel", None),
    ("POST", "/runs/{run_id}/tasks/{task}/approve"): ("POST", "/runs/nope/tasks/go/approve", {"data": {}}),
    ("GET", "/metrics"): ("GET", "/metrics", None),
    ("GET", "/catalog"): ("GET", "/catalog", None),
    ("GET", "/workers"): ("GET", "/workers", None),
    ("GET", "/openapi.json"): ("GET", "/openapi.json", None),
    ("GET", "/healthz"): ("GET", "/healthz", None),
    ("POST", "/hooks/{name}"): ("POST", "/hooks/open", {"type": "ping"}),
}


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    running = RedisServer()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("auth") / "project", rules=RULES, workflows=WORKFLOWS)


def is_ui(path: str) -> bool:
    """The web UI's routes (tests/security/test_ui_auth.py checks them): `/` and everything under /ui."""
    return path == "/" or path.startswith("/ui/")


def routes(app: Any) -> dict[tuple[str, str], str | None]:
    """(method, path) -> the route's declared scope, for every route the app serves."""
    return {(method, route.path): (route.openapi_extra or {}).get("x-orch-scope")
            for route in api_routes(app.routes) for method in route.methods}


def test_every_route_of_the_app_declares_a_scope(server: RedisServer, project: Path) -> None:
    from triggers.webhooks import load_hooks, resolve_all
    from triggers.webhooks.router import create_router

    hooks, where = load_hooks(project)
    app = create_app(Settings(redis_url=server.url, project=project),
                     hooks=create_router(hooks, resolve_all(hooks, {}, project_root=project, locations=where)))

    table = {key: scope for key, scope in routes(app).items() if not is_ui(key[1])}

    assert set(table) == set(CALLS), "a route was added or removed: give it a scope and a call in CALLS"
    assert all(scope in SCOPES or scope in (ANY_TOKEN, PUBLIC, SIGNATURE) for scope in table.values()), table
    assert [k for k, s in table.items() if s == PUBLIC] == [("GET", "/healthz")]
    assert [k for k, s in table.items() if s == SIGNATURE] == [("POST", "/hooks/{name}")]


@pytest.fixture(scope="module")
def api(server: RedisServer, project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    env = orch_env(server.url, project, ORCH_API_PORT=str(port))
    procs = Processes(env, tmp_path_factory.mktemp("api-logs"))
    procs.start("api", "api")
    procs.start("engine", "engine")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _status(f"{base}/healthz") == 200, 30, "orch api to answer")
    yield base, env
    procs.stop_all()


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.HTTPError:
        return None


def call(base: str, key: tuple[str, str], token: str | None, **headers: str) -> httpx.Response:
    method, path, body = CALLS[key]
    sent = {"content-type": "application/cloudevents+json" if path == "/events" else "application/json", **headers}
    if token:
        sent["authorization"] = f"Bearer {token}"
    return httpx.request(method, base + path, content=json.dumps(body) if body is not None else None,
                         headers=sent, timeout=10)


def scope_of(key: tuple[str, str]) -> str:
    return {("POST", "/events"): "events:write", ("GET", "/events"): "events:read",
            ("GET", "/events/{entry_id}"): "events:read", ("GET", "/runs"): "runs:read",
            ("GET", "/runs/{run_id}"): "runs:read", ("GET", "/runs/{run_id}/logs"): "runs:read",
            ("GET", "/slots"): "runs:read",
            ("POST", "/runs/{run_id}/logs"): "runs:read",
            ("POST", "/runs/{run_id}/{action}"): "runs:steer",
            ("POST", "/runs/{run_id}/tasks/{task}/approve"): "runs:steer",
            ("GET", "/metrics"): "metrics:read", ("GET", "/catalog"): "system:read", ("GET", "/workers"): "system:read",
            ("GET", "/openapi.json"): ANY_TOKEN,
            ("GET", "/healthz"): PUBLIC, ("POST", "/hooks/{name}"): SIGNATURE}[key]


@pytest.mark.parametrize("key", list(CALLS), ids=[f"{m} {p}" for m, p in CALLS])
def test_each_route_answers_401_without_a_token_403_without_its_scope_and_serves_with_it(
        api: tuple[str, dict[str, str]], key: tuple[str, str]) -> None:
    base, env = api
    scope = scope_of(key)
    if scope in (PUBLIC, SIGNATURE):
        assert call(base, key, None).status_code in (200, 202), "open to anyone (webhooks: their signatures)"
        return
    other = next(s for s in SCOPES if s not in (scope, "admin"))
    route = re.sub(r"[^A-Za-z0-9]+", "-", key[1]).strip("-")  # token names are unique: one pair per route
    wrong = create_token(env, f"wrong-{key[0]}-{route}-{other.replace(':', '-')}", other)
    right = create_token(env, f"right-{key[0]}-{route}", scope if scope in SCOPES else "runs:read")

    anonymous = call(base, key, None)
    forged = call(base, key, "orch_0123456789ab_" + "A" * 43)
    garbage = call(base, key, "not a token")
    lacking = call(base, key, wrong)
    allowed = call(base, key, right)

    for refused in (anonymous, forged, garbage):
        assert refused.status_code == 401, refused.text
        assert refused.json()["scope"] == scope and refused.headers["www-authenticate"].startswith("Bearer")
    if scope == ANY_TOKEN:
        assert lacking.status_code == 200
    else:
        assert lacking.status_code == 403 and lacking.json()["scope"] == scope and scope in lacking.json()["error"]
    assert allowed.status_code not in (401, 403), allowed.text


def test_the_actor_of_every_steering_request_is_the_tokens_name_never_a_header(api: tuple[str, dict[str, str]]) -> None:
    base, env = api
    writer = create_token(env, "shop-app", "events:write")
    operator = create_token(env, "ops-alice", "runs:steer", "runs:read")
    posted = httpx.post(f"{base}/events", content=json.dumps({"word": "hi"}), timeout=10, headers={
        "authorization": f"Bearer {writer}", "content-type": "application/json", "ce-specversion": "1.0",
        "ce-id": "actor-1", "ce-source": "/t", "ce-type": "say.requested"})
    assert posted.status_code == 202
    as_operator = {"authorization": f"Bearer {operator}"}
    run_id = wait_for(lambda: next((r["id"] for r in httpx.get(f"{base}/runs", headers=as_operator, timeout=10).json()
                                    if r["event"]["id"] == "actor-1"), None), 30, "the engine to start the run")

    steered = httpx.post(f"{base}/runs/{run_id}/cancel", timeout=10,
                         headers={**as_operator, "x-orch-user": "mallory", "x-forwarded-user": "mallory"})

    assert steered.status_code == 202
    def cancelled() -> dict[str, Any] | None:
        run: dict[str, Any] = httpx.get(f"{base}/runs/{run_id}", headers=as_operator, timeout=10).json()
        return run if run["status"] == "cancelled" else None

    run = wait_for(cancelled, 30, "the engine to cancel the run")
    assert run["error"] == "cancelled by ops-alice"

    retried = httpx.post(f"{base}/runs/{run_id}/retry", timeout=10, headers={**as_operator, "x-orch-user": "mallory"})
    assert retried.status_code == 202
    rerun = httpx.post(f"{base}/runs/{run_id}/rerun", timeout=10, headers=as_operator).json()["new_run"]

    def log_of(run: str, entries: int) -> list[dict[str, Any]] | None:
        steering: list[dict[str, Any]] = httpx.get(f"{base}/runs/{run}", headers=as_operator, timeout=10).json().get(
            "steering", [])
        return steering if len(steering) >= entries else None

    steering = wait_for(lambda: log_of(run_id, 3), 30, "the engine to record the retry and the rerun")
    assert [(e["action"], e["by"]) for e in steering] == [("cancel", "ops-alice"), ("retry", "ops-alice"),
                                                          ("rerun", "ops-alice")]
    assert steering[2]["new_run"] == rerun
    copy = wait_for(lambda: log_of(rerun, 1), 30, "the rerun")
    assert copy == [{"action": "rerun", "by": "ops-alice", "at": copy[0]["at"], "of": run_id}]


def test_a_revoked_token_stops_working(api: tuple[str, dict[str, str]]) -> None:
    base, env = api
    token = create_token(env, "short-lived", "runs:read")
    assert httpx.get(f"{base}/runs", headers={"authorization": f"Bearer {token}"}, timeout=10).status_code == 200

    orch("tokens", "revoke", "short-lived", env=env)

    wait_for(lambda: httpx.get(f"{base}/runs", headers={"authorization": f"Bearer {token}"},
                               timeout=10).status_code == 401, 10, "the revoked token to be refused")


def test_redis_holds_hashes_of_tokens_never_the_tokens(server: RedisServer, api: tuple[str, dict[str, str]]) -> None:
    _, env = api
    token = create_token(env, "secret-keeper", "admin")
    client = redis.Redis.from_url(server.url)
    try:
        stored = b"".join(v for key in client.scan_iter("orch:token*") for v in (
            client.hvals(key) if client.type(key) == b"hash" else [client.get(key) or b""]))
    finally:
        client.close()
    assert token.encode() not in stored and token.split("_", 2)[2].encode() not in stored  # the secret may hold "_"


def start_api(server: RedisServer, project: Path, logs: Path, *args: str, **env: str) -> tuple[str, Processes]:
    port = free_port()
    procs = Processes(orch_env(server.url, project, ORCH_API_PORT=str(port), **env), logs)
    procs.start("api", "api", *args)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _status(f"{base}/healthz") == 200 or procs.running["api"].poll() is not None, 30, "orch api")
    return base, procs


def test_the_hooks_role_serves_webhooks_and_health_only(server: RedisServer, project: Path, tmp_path: Path) -> None:
    base, procs = start_api(server, project, tmp_path, "--role", "hooks")
    admin = create_token(procs.env, "admin-for-roles", "admin")
    try:
        hooked = call(base, ("POST", "/hooks/{name}"), None)
        operator = {key: call(base, key, admin).status_code for key in CALLS if key[1] not in ("/healthz", "/hooks/{name}")}
    finally:
        procs.stop_all()

    assert hooked.status_code == 202
    assert set(operator.values()) == {404}, operator


def test_the_operator_role_serves_no_webhooks(server: RedisServer, project: Path, tmp_path: Path) -> None:
    base, procs = start_api(server, project, tmp_path, "--role", "operator")
    try:
        hooked = call(base, ("POST", "/hooks/{name}"), None)
    finally:
        procs.stop_all()

    assert hooked.status_code == 404


def test_no_authentication_only_on_loopback(server: RedisServer, project: Path, tmp_path: Path) -> None:
    env = orch_env(server.url, project, ORCH_API_AUTH="none", ORCH_API_HOST="0.0.0.0", ORCH_API_PORT=str(free_port()))
    refused = orch("api", env=env, check=False, timeout=30)
    assert refused.returncode == 1 and "ORCH_API_AUTH=none" in refused.stderr and "loopback" in refused.stderr

    base, procs = start_api(server, project, tmp_path, ORCH_API_AUTH="none")
    try:
        open_runs = call(base, ("GET", "/runs"), None)
    finally:
        procs.stop_all()
    assert open_runs.status_code == 200
