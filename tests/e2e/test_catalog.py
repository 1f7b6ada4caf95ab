"""GET /catalog and GET /workers as an operator uses them: separate `orch api`, `orch engine` and `orch worker`
processes, a token with only `system:read`.

The API (and `orch catalog`) serves no catalogue until an engine has written one (404, saying so); then it
shows the project the engine loaded, with upcoming firings and webhook deliveries. A worker blocked in a task shows as running
it, in GET /workers and `orch workers --json`, and its finished tasks are counted once it is released.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..catalog_project import HOOK_SECRET_ENV, catalog_project
from ..helpers import RedisServer, free_port, wait_for
from .conftest import Processes, create_token, orch, orch_env, orch_json

HOOK_SECRET = "catalog-e2e-hook-secret"


@dataclass
class Deployment:
    redis: RedisServer
    procs: Processes
    api: str
    token: str

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.api + path, headers={"authorization": f"Bearer {self.token}"}, timeout=10)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    server = RedisServer()
    port = free_port()
    project = catalog_project(tmp_path / "shop")
    procs = Processes(orch_env(server.url, project, ORCH_API_PORT=str(port), CATALOG_TEST_REDIS_URL=server.url,
                               **{HOOK_SECRET_ENV: HOOK_SECRET}), tmp_path)
    token = create_token(procs.env, "ops-viewer", "system:read")
    procs.start("api", "api")
    deployment = Deployment(server, procs, f"http://127.0.0.1:{port}", token)
    try:
        wait_for(lambda: _answers(deployment), 30, "orch api to answer")
        yield deployment
    finally:
        client = server.client()
        client.rpush("gate-e2e", "open")  # a worker still blocked in its task lets go
        client.close()
        procs.stop_all()
        server.stop()


def _answers(deployment: Deployment) -> bool:
    try:
        return httpx.get(f"{deployment.api}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _catalog(deployment: Deployment) -> dict[str, Any] | None:
    answer = deployment.get("/catalog")
    return answer.json() if answer.status_code == 200 else None


def test_the_catalogue_comes_from_the_engine_with_firings_and_deliveries(deployment: Deployment) -> None:
    before = deployment.get("/catalog")
    assert before.status_code == 404 and "orch engine" in before.json()["error"]
    refused = orch("catalog", env=deployment.procs.env, check=False)
    assert refused.returncode == 1 and "orch engine" in refused.stderr

    deployment.procs.start("engine", "engine")
    catalog = wait_for(lambda: _catalog(deployment), 30, "the engine to write the catalogue")
    delivered = httpx.post(f"{deployment.api}/hooks/shop", content=json.dumps({"kind": "paid"}), timeout=10,
                           headers={"content-type": "application/json", "x-shop-token": HOOK_SECRET})
    refused = httpx.post(f"{deployment.api}/hooks/shop", content=b"{}", timeout=10,
                         headers={"content-type": "application/json", "x-shop-token": "wrong"})
    counted = wait_for(lambda: (c := _catalog(deployment)) and c["hooks"][0]["deliveries"].get("accepted") and c, 30,
                       "the webhook's delivery counts")

    assert {r["name"] for r in catalog["rules"]} == {"hold", "eu-orders", "nightly-report", "shop-hooks", "csv-files"}
    assert {w["name"]: w["kind"] for w in catalog["workflows"]} == {"batch": "python", "greet": "yaml", "hold": "python"}
    (schedule,) = catalog["schedules"]
    assert len(schedule["next"]) == 5 and all(f["utc"].endswith("Z") for f in schedule["next"])
    assert all(f["local"][-6:] in ("+01:00", "+02:00") for f in schedule["next"]), "Berlin time"
    assert (delivered.status_code, refused.status_code) == (202, 401)
    assert counted["hooks"][0]["deliveries"] == {"accepted": 1, "duplicate": 0, "unauthorized": 1}
    assert HOOK_SECRET_ENV not in json.dumps(counted) and HOOK_SECRET not in json.dumps(counted)
    assert len(deployment.get("/catalog?firings=12").json()["schedules"][0]["next"]) == 12
    listed = orch_json("catalog", env=deployment.procs.env)
    assert listed["rules"] == catalog["rules"] and listed["hooks"][0]["deliveries"]["accepted"] == 1
    shown = orch("catalog", env=deployment.procs.env).stdout
    assert "SCHEDULES" in shown and "Europe/Berlin" in shown and "accepted=1" in shown


def _busy(deployment: Deployment) -> dict[str, Any] | None:
    workers = deployment.get("/workers").json()["workers"]
    return next((w for w in workers if w["current"]), None)


def test_workers_show_the_task_they_run_and_queues_what_they_finished(deployment: Deployment) -> None:
    procs = deployment.procs
    procs.start("engine", "engine")
    procs.start("worker", "worker", "--name", "gatekeeper")
    admin = create_token(procs.env, "ops-admin", "events:write")
    posted = httpx.post(f"{deployment.api}/events", timeout=10, content=json.dumps({"gate": "gate-e2e"}), headers={
        "authorization": f"Bearer {admin}", "content-type": "application/json", "ce-specversion": "1.0",
        "ce-id": "hold-1", "ce-source": "/ops", "ce-type": "hold.requested"})
    assert posted.status_code == 202

    busy = wait_for(lambda: _busy(deployment), 60, "the worker to run the blocking task")
    listed = orch_json("workers", env=procs.env)
    client = deployment.redis.client()
    client.rpush("gate-e2e", "open")
    client.close()
    queues = wait_for(lambda: [q for q in deployment.get("/workers").json()["queues"] if q["queue"] == "default"
                               and sum(m["count"] for m in q["finished_per_minute"]) == 1], 60,
                      "the finished task to be counted")

    assert busy["name"] == "gatekeeper" and busy["state"] == "busy" and busy["current"]["node"] == "wait_for_gate"
    assert busy["current"]["running_s"] >= 0 and busy["heartbeat_age_s"] < 30
    assert [w["current"]["node"] for w in listed["workers"] if w["name"] == "gatekeeper"] == ["wait_for_gate"]
    assert (queues[0]["queued"], queues[0]["started"]) == (0, 0)
