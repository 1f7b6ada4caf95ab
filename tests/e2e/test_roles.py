"""Which role needs what from the project, through real `orch` processes: only `orch triggers` and
`orch validate` check watched directories on disk; `orch api` reads only the hooks; events posing as
orch's own triggers are refused on every custom path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from ..helpers import RedisServer, free_port, wait_for
from ..projects import make_project
from .conftest import Processes, create_token, orch, orch_env

pytestmark = pytest.mark.e2e

WORKFLOW = """\
    from orchestrator import task, workflow

    @task
    def note(text: str) -> str:
        return text

    @workflow
    def noted(text: str):
        note(text)
    """
RULES = """\
    rules:
      - {name: note-it, type: note.requested, workflow: noted, params: {text: "{{ data.text }}"}}
    watches:
      - name: drop
        path: not-on-this-host/drop
    """


@pytest.fixture
def server() -> Iterator[RedisServer]:
    running = RedisServer()
    yield running
    running.stop()


def _engine_group(client: redis.Redis) -> bool:
    try:
        return any(g["name"] == b"engine" for g in client.xinfo_groups("orch:events"))
    except redis.ResponseError:
        return False


def test_a_watch_on_a_missing_directory_stops_only_triggers_and_validate(server: RedisServer,
                                                                        tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", rules=RULES, workflows={"notes": WORKFLOW})
    env = orch_env(server.url, project)
    procs = Processes(env, tmp_path)
    client = server.client()
    try:
        procs.start("engine", "engine")
        wait_for(lambda: _engine_group(client) or procs.running["engine"].poll() is not None, 30,
                 "the engine to start (or exit)")
        assert procs.running["engine"].poll() is None, procs.log("engine")
        validate = orch("validate", env=env, check=False)
        triggers = orch("triggers", env=env, check=False, timeout=30)
    finally:
        client.close()
        procs.stop_all()

    for result in (validate, triggers):
        assert result.returncode == 1
        assert f"{project / 'rules' / 'rules.yaml'}:5: watches[0].path: directory " in result.stderr
        assert "does not exist" in result.stderr


def test_orch_api_serves_events_and_hooks_beside_a_broken_workflow_and_rule(server: RedisServer,
                                                                            tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", rules="""\
        rules:
          - {name: orphan, type: x, workflow: no_such_workflow}
        hooks:
          - {name: open, verify: none}
        """, workflows={"broken": "raise RuntimeError('a bug in a workflow module')\n"})
    assert orch("validate", env=orch_env(server.url, project), check=False).returncode == 1
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs = Processes(orch_env(server.url, project, ORCH_API_PORT=str(port)), tmp_path)
    token = create_token(procs.env, "shop", "events:write")
    try:
        procs.start("api", "api")
        wait_for(lambda: _status(f"{base}/healthz") == 200 or procs.running["api"].poll() is not None, 30,
                 "orch api to answer /healthz")
        assert procs.running["api"].poll() is None, procs.log("api")
        event = {"specversion": "1.0", "id": "e-1", "source": "/shop", "type": "order.created"}
        posted = httpx.post(f"{base}/events", content=json.dumps(event), timeout=10,
                            headers={"content-type": "application/cloudevents+json",
                                     "authorization": f"Bearer {token}"})
        hooked = httpx.post(f"{base}/hooks/open", content=b'{"type": "ping"}', timeout=10,
                            headers={"content-type": "application/json"})
    finally:
        procs.stop_all()

    assert posted.status_code == 202 and posted.json()["ids"] == ["e-1"]
    assert hooked.status_code == 202 and hooked.json()["type"] == "open.ping"


@pytest.mark.parametrize("source", ["/schedules/nightly-digest", "/hooks/github", "/watches/inbox"])
def test_custom_events_may_not_pose_as_orchs_triggers(server: RedisServer, tmp_path: Path, source: str) -> None:
    project = make_project(tmp_path / "project")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = orch_env(server.url, project, ORCH_API_PORT=str(port))
    procs = Processes(env, tmp_path)
    token = create_token(env, "app", "events:write")
    try:
        procs.start("api", "api")
        wait_for(lambda: _status(f"{base}/healthz") == 200, 30, "orch api to answer /healthz")
        posted = httpx.post(f"{base}/events", timeout=10, content=b"{}", headers={
            "content-type": "application/json", "ce-specversion": "1.0", "ce-id": "tick-1", "ce-source": source,
            "ce-type": "schedule.fired", "authorization": f"Bearer {token}"})
    finally:
        procs.stop_all()
    emitted = orch("emit", "schedule.fired", "--source", source, env=env, check=False)

    assert posted.status_code == 422 and posted.json()["field"] == "source"
    assert "reserved" in posted.json()["error"] and source in posted.json()["error"]
    assert emitted.returncode == 1 and "reserved for orch's" in emitted.stderr
    client = server.client()
    try:
        assert client.xlen("orch:events") == 0
    finally:
        client.close()


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.HTTPError:
        return None
