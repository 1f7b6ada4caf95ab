"""Causation end to end: a task that emits events, run by real `orch engine` and `orch worker` processes,
marks them with its run (`orchrun`) and node (`orchtask`), visible in the stream, the CLI and the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator import Client
from orchestrator.settings import Settings
from orchestrator.workflows.runs import derive_run_id

from ..helpers import wait_for
from ..projects import make_project
from .conftest import Stack, orch_json, start_stack, stop_stack

pytestmark = pytest.mark.e2e

RULES = """
    rules:
      - name: announce-orders
        type: order.placed
        workflow: announce_order
        params:
          order_id: "{{ event.data.order_id }}"
"""
WORKFLOWS = {"announce": """
    import orchestrator
    from orchestrator import AsyncClient, task, workflow


    @task
    def announce(order_id: str) -> str:
        return orchestrator.emit("order.announced", {"order_id": order_id}, source="/tasks")


    @task
    async def announce_async(order_id: str) -> str:
        async with AsyncClient(source="/tasks") as client:
            return await client.emit("order.announced.async", {"order_id": order_id})


    @workflow
    def announce_order(order_id: str):
        announce(order_id)
        announce_async(order_id)
"""}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    project = make_project(tmp_path_factory.mktemp("project"), rules=RULES, workflows=WORKFLOWS)
    running = start_stack(tmp_path_factory.mktemp("logs"), project)
    yield running
    stop_stack(running)


def _finished_run(stack: Stack, run_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        response = stack.http().get(f"/runs/{run_id}")
        return dict(response.json()) if response.status_code == 200 and response.json()["status"] != "running" else None

    return wait_for(finished, 20, f"run {run_id} to finish")


def test_events_emitted_by_a_task_name_its_run_and_node(stack: Stack) -> None:
    with Client(settings=Settings(redis_url=stack.redis.url), source="/shop") as client:
        event_id = client.emit("order.placed", {"order_id": "A-1"})
    run_id = derive_run_id("announce-orders", "/shop", event_id)

    run = _finished_run(stack, run_id)
    assert run["status"] == "succeeded", run
    emitted = {task["node"]: task["result"] for task in run["tasks"]}

    listed = {e["id"]: e for e in orch_json("events", "list", "--type", "order.announced*", env=stack.env)}
    api = {e["id"]: e for e in stack.http().get("/events", params={"type": "order.announced*"}).json()}
    for node, type_ in (("announce", "order.announced"), ("announce_async", "order.announced.async")):
        for seen in (listed, api):
            event = seen[emitted[node]]
            assert (event["type"], event["source"]) == (type_, "/tasks")
            assert (event["orchrun"], event["orchtask"]) == (run_id, node)
            assert event["data"] == {"order_id": "A-1"}
    trigger = orch_json("events", "list", "--type", "order.placed", env=stack.env)
    assert [e["id"] for e in trigger] == [event_id] and "orchrun" not in trigger[0], "emitted outside a task"
