"""Remote Redis as a team runs it: TLS (rediss://), passwords, and one ACL user per role, least privilege.

A redis-server speaking only TLS, with a certificate made here, loads the aclfile `orch redis-acl` prints
(plus an admin user for the operator). `orch api`, `orch engine`, `orch worker` and `orch triggers` each
run as their own ACL user over rediss://. The whole pipeline works through them: an event over HTTP runs
its workflow, a cron tick runs another whose task emits an event that starts a third, runs and the task
logs the worker wrote are read (and followed) and steered over HTTP, metrics are scraped; no process ever
meets NOPERM. And each role's user is refused
what it does not need: writing runs, dangerous commands, other roles' keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from ..e2e.conftest import Processes, create_token, orch, orch_env
from ..helpers import RedisServer, free_port, wait_for
from ..projects import make_project

ADMIN_PASSWORD = "operator-secret"
RULES = """
rules:
  - {name: say, type: say.requested, workflow: say, params: {word: "{{ data.word }}"}}
  - {name: tick, type: schedule.fired, source: /schedules/every-second, workflow: tick, params: {}}
  - {name: pong, type: pong, workflow: record, params: {what: "{{ data.from }}"}}
schedules:
  - {name: every-second, cron: "* * * * * *", timezone: UTC}
"""
WORKFLOWS = {"flows": """
    from orchestrator import task, workflow
    from orchestrator.context import current

    @task
    def echo(word: str) -> str:
        current().logger.info("echoing %s", word)
        return word

    @task
    def ping() -> str:
        ctx = current()
        return ctx.emit("pong", {"from": ctx.run_id}, id=f"{ctx.key}:pong")

    @workflow
    def say(word: str):
        echo(word)

    @workflow
    def tick():
        ping()

    @workflow
    def record(what: str):
        echo(what)
"""}


@dataclass
class Deployment:
    server: RedisServer
    users: dict[str, str]  # role -> its ORCH_REDIS_URL
    procs: Processes
    api: str
    token: str

    def get(self, path: str) -> Any:
        return httpx.get(self.api + path, headers={"authorization": f"Bearer {self.token}"}, timeout=10)


def acl_users(tmp: Path, env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """The aclfile `orch redis-acl` prints, with an admin user added; role -> password."""
    printed = orch("redis-acl", env=env).stdout
    passwords = dict(re.findall(r"^user orch-(\w+) on >(\S+) ", printed, re.MULTILINE))
    path = tmp / "users.acl"
    path.write_text(printed + f"user default on >{ADMIN_PASSWORD} ~* &* +@all\n")
    return path, passwords


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("acl")
    project = make_project(tmp / "project", rules=RULES, workflows=WORKFLOWS)
    aclfile, passwords = acl_users(tmp, orch_env(None, project))
    assert set(passwords) == {"api", "engine", "worker", "triggers"}
    server = RedisServer("--aclfile", str(aclfile), password=ADMIN_PASSWORD, tls=True)
    users = {role: server.url_for(f"orch-{role}", password) for role, password in passwords.items()}
    port = free_port()
    admin_env = orch_env(server.url, project, ORCH_API_PORT=str(port))
    procs = Processes(admin_env, tmp)
    token = create_token(admin_env, "ops", "admin")  # an operator's command: the admin user
    for role in ("api", "engine", "worker", "triggers"):
        procs.start(role, role, ORCH_REDIS_URL=users[role])
    api = f"http://127.0.0.1:{port}"
    wait_for(lambda: _healthy(api), 30, "orch api to answer")
    yield Deployment(server, users, procs, api, token)
    procs.stop_all()
    server.stop()


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _succeeded(deployment: Deployment, workflow: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = deployment.get(f"/runs?workflow={workflow}&status=succeeded").json()
    return runs


def test_every_role_works_under_its_own_acl_user_over_tls(deployment: Deployment) -> None:
    posted = httpx.post(f"{deployment.api}/events", timeout=10, content=json.dumps({"word": "hi"}), headers={
        "authorization": f"Bearer {deployment.token}", "content-type": "application/json", "ce-specversion": "1.0",
        "ce-id": "acl-1", "ce-source": "/t", "ce-type": "say.requested"})
    assert posted.status_code == 202, posted.text

    wait_for(lambda: _succeeded(deployment, "say"), 60, "the HTTP event's run (api -> engine -> worker)")
    wait_for(lambda: _succeeded(deployment, "tick"), 60, "a cron tick's run (triggers -> engine -> worker)")
    wait_for(lambda: _succeeded(deployment, "record"), 60, "the run of the event a task emitted (worker publishes)")
    scrape = deployment.get("/metrics")
    assert scrape.status_code == 200 and "orch_redis_up 1.0" in scrape.text, "the api user reads every gauge's keys"
    catalog = deployment.get("/catalog")  # written by the engine's user, read by the api's
    assert catalog.status_code == 200 and {r["name"] for r in catalog.json()["rules"]} == {"say", "tick", "pong"}
    assert catalog.json()["schedules"][0]["next"], catalog.json()
    fleet = deployment.get("/workers")  # heartbeats, RQ's queues and jobs, the workers' finished-task counts
    assert fleet.status_code == 200 and fleet.json()["workers"], fleet.text
    default = next(q for q in fleet.json()["queues"] if q["queue"] == "default")
    assert sum(m["count"] for m in default["finished_per_minute"]) >= 3, default
    (run, *_) = _succeeded(deployment, "say")
    assert deployment.get(f"/runs/{run['id']}").json()["tasks"][0]["result"] == "hi"
    logged = deployment.get(f"/runs/{run['id']}/logs").json()["attempts"][0]["lines"]
    assert any(line.endswith("echoing hi") for line in logged), "the worker wrote its task's log, the api read it"
    followed = deployment.get(f"/runs/{run['id']}/logs?follow=true")
    assert "echoing hi" in followed.text and "event: end" in followed.text
    rerun = httpx.post(f"{deployment.api}/runs/{run['id']}/rerun", headers={
        "authorization": f"Bearer {deployment.token}"}, timeout=10)
    assert rerun.status_code == 202
    wait_for(lambda: len(_succeeded(deployment, "say")) == 2, 60, "the rerun (steering through the api user)")
    for role in ("api", "engine", "worker", "triggers"):
        assert "NOPERM" not in deployment.procs.log(role), deployment.procs.log(role)
    admin = redis.Redis.from_url(deployment.server.url)
    assert admin.hget("orch:tokens:used", deployment.token.split("_")[1]), "the api user recorded the token's use"
    admin.close()


@pytest.mark.parametrize(("role", "command"), [
    ("api", ("HSET", "orch:run:forged", "meta", "{}")),
    ("api", ("LPUSH", "rq:queue:orch.default", "forged")),
    ("worker", ("HSET", "orch:run:forged", "meta", "{}")),
    ("api", ("RPUSH", "orch:log:forged:echo:1", "a line no task wrote")),  # logs are the workers' to write
    ("triggers", ("RPUSH", "orch:log:forged:echo:1", "a line no task wrote")),
    ("worker", ("SET", "orch:schedule:every-second:last", "0")),
    ("triggers", ("HSET", "orch:run:forged", "meta", "{}")),
    ("triggers", ("LPUSH", "rq:queue:orch.default", "forged")),
    ("engine", ("FLUSHALL",)),
    ("engine", ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")),
    ("api", ("KEYS", "*")),
    ("api", ("HSET", "orch:token:0123456789ab", "scopes", "admin")),  # no minting tokens
    ("api", ("HSET", "orch:tokens", "mallory", "0123456789ab")),
    ("worker", ("CONFIG", "GET", "masterauth")),  # no role reads the server's secrets
    ("api", ("CONFIG", "GET", "*")),
    ("api", ("SET", "orch:catalog", "{}")),  # the catalogue is the engine's: the API only reads it
    ("worker", ("SET", "orch:catalog", "{}")),
    ("triggers", ("HINCRBY", "orch:throughput:default:1", "60", "1")),
    ("worker", ("EVAL", "return redis.call('HSET', KEYS[1], 'meta', '{}')", "1", "orch:run:forged")),
])
def test_each_role_is_refused_what_it_does_not_need(deployment: Deployment, role: str,
                                                   command: tuple[str, ...]) -> None:
    client = redis.Redis.from_url(deployment.users[role])
    try:
        with pytest.raises(redis.ResponseError, match="NOPERM|no permissions|can't access"):
            client.execute_command(*command)
    finally:
        client.close()


def test_a_plain_connection_to_a_tls_redis_and_a_wrong_password_are_refused(deployment: Deployment) -> None:
    plain = redis.Redis(host="127.0.0.1", port=deployment.server.port, password=ADMIN_PASSWORD,
                        socket_connect_timeout=2, socket_timeout=2)
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    wrong = redis.Redis.from_url(deployment.server.url_for("orch-engine", "not-the-password"))
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
