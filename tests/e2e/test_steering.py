"""Retries, fan-out, timeouts and steering through real `orch` processes, as a user drives them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from ..helpers import wait_for
from ..projects import make_project
from .conftest import Stack, orch, orch_json, start_stack, stop_stack

FLOWS = '''\
import time
from pathlib import Path

from orchestrator import call_http, run_shell, task, workflow
from orchestrator.context import current

STATE = Path(__file__).resolve().parent.parent / "state"


@task(retries={"max_retries": 3, "backoff_s": 0.2, "jitter": False})
def flaky(fail_times: int) -> dict:
    ctx = current()
    marker = STATE / ctx.key.replace(":", "_")
    seen = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(seen + 1))
    if seen < fail_times:
        raise ConnectionError(f"attempt {ctx.attempt}: not yet")
    return {"attempts": ctx.attempt, "key": ctx.key}


@task
def gate() -> str:
    if (STATE / "open").exists():
        return "open"
    raise RuntimeError("the gate is closed")


@task
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task
def numbers(n: int) -> list:
    return list(range(n))


@task
def square(x: int) -> int:
    return x * x


@task
def add(values: list) -> int:
    return sum(values)


@task
def after(x) -> str:
    return f"after {x}"


@workflow
def flaky_flow(fail_times: int):
    after(flaky(fail_times))


@workflow
def gated():
    after(gate())


@workflow
def slow_flow(seconds: float):
    after(slow(seconds))


@workflow
def fan(n: int):
    add(square.with_options(max_parallel=4).map(numbers(n)))


@workflow
def commands(word: str):
    out = run_shell("echo", ["echo", word])
    after(out["stdout"])


@workflow(timeout_s=1)
def too_slow():
    slow(30)


@task
def patient(first_s: float) -> int:
    """Slow on its first attempt only: a retry's attempt outlives a heartbeat or two, then succeeds."""
    ctx = current()
    time.sleep(first_s if ctx.attempt == 1 else 1.5)
    return ctx.attempt


@workflow
def patient_flow(first_s: float):
    patient(first_s)


@workflow(timeout_s=3)
def patient_timed(first_s: float):
    patient(first_s)
'''

RULES = """\
rules:
  - {name: flaky, type: test.flaky, workflow: flaky_flow, params: {fail_times: "{{ data.fail }}"}}
  - {name: gated, type: test.gated, workflow: gated}
  - {name: slow, type: test.slow, workflow: slow_flow, params: {seconds: "{{ data.seconds }}"}}
  - {name: fan, type: test.fan, workflow: fan, params: {n: "{{ data.n }}"}}
  - {name: commands, type: test.shell, workflow: commands, params: {word: "{{ data.word }}"}}
  - {name: too-slow, type: test.too_slow, workflow: too_slow}
  - {name: patient, type: test.patient, workflow: patient_flow, params: {first_s: "{{ data.first_s }}"}}
  - {name: patient-timed, type: test.patient_timed, workflow: patient_timed, params: {first_s: "{{ data.first_s }}"}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("steering")
    project = make_project(root / "project", rules=RULES, workflows={"flows": FLOWS})
    (project / "state").mkdir()
    running = start_stack(root, project, workers=2)
    yield running
    stop_stack(running)


def emit(stack: Stack, type: str, data: dict[str, Any]) -> str:
    out = orch("emit", type, "--data", __import__("json").dumps(data), "--json", env=stack.env)
    event_id = __import__("json").loads(out.stdout)["id"]
    run = wait_for(lambda: [r for r in orch_json("runs", "list", "-n", "200", env=stack.env)
                            if r["event"]["id"] == event_id], 20, f"the run of {type}")
    return str(run[0]["id"])


def finished(stack: Stack, run_id: str, timeout_s: float = 30) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = orch_json("runs", "show", run_id, env=stack.env)
        return run if run["status"] != "running" else None
    return wait_for(done, timeout_s, f"run {run_id} to finish", interval_s=0.2)


def task_of(run: dict[str, Any], node: str) -> dict[str, Any]:
    return next(t for t in run["tasks"] if t["node"] == node)


def test_a_flaky_task_is_retried_with_the_same_idempotency_key_until_it_succeeds(stack: Stack) -> None:
    run = finished(stack, emit(stack, "test.flaky", {"fail": 2}))

    assert run["status"] == "succeeded"
    flaky = task_of(run, "flaky")
    assert flaky["attempt"] == 3 and flaky["result"] == {"attempts": 3, "key": f"{run['id']}:flaky"}
    assert [(h["attempt"], h["state"], h["error_type"]) for h in flaky["history"]] == [
        (1, "failed", "ConnectionError"), (2, "failed", "ConnectionError")]
    assert "attempt 1: not yet" in flaky["history"][0]["error"]


def test_retries_run_out(stack: Stack) -> None:
    run = finished(stack, emit(stack, "test.flaky", {"fail": 10}))
    assert run["status"] == "failed" and task_of(run, "flaky")["attempt"] == 4
    assert task_of(run, "after")["state"] == "skipped"


def test_a_failed_run_is_retried_from_its_failed_tasks_and_rerun_from_a_task(stack: Stack) -> None:
    run_id = emit(stack, "test.gated", {})
    assert finished(stack, run_id)["status"] == "failed"
    (stack.project / "state" / "open").write_text("")

    retried = orch_json("runs", "retry", run_id, "--wait", env=stack.env)
    assert retried["status"] == "succeeded" and retried["run"] == run_id
    gate = task_of(retried["result"], "gate")
    assert gate["attempt"] == 2 and gate["history"][0]["state"] == "failed"

    rerun = orch_json("runs", "rerun", run_id, "--from", "after", "--wait", env=stack.env)
    new = rerun["result"]
    assert rerun["new_run"] != run_id and new["rerun_of"] == run_id and new["status"] == "succeeded"
    assert task_of(new, "gate")["history"] == [{"reused_from": run_id, "attempt": 2}]

    refused = orch("runs", "retry", run_id, env=stack.env, check=False)
    assert refused.returncode == 1 and "only failed or cancelled runs can be retried" in refused.stderr


def test_cancel_a_running_run_over_http(stack: Stack) -> None:
    run_id = emit(stack, "test.slow", {"seconds": 20})
    wait_for(lambda: task_of(orch_json("runs", "show", run_id, env=stack.env), "slow")["state"] == "running", 20,
             "the slow task to start")
    answer = stack.http().post(f"/runs/{run_id}/cancel")
    assert answer.status_code == 202 and answer.json() == {"action": "cancel", "run": run_id}

    run = finished(stack, run_id, 10)
    assert run["status"] == "cancelled" and task_of(run, "slow")["state"] == "cancelled"
    assert stack.http().post(f"/runs/{run_id}/cancel").status_code == 409
    assert stack.http().post("/runs/nope/retry").status_code == 404
    assert stack.http().post(f"/runs/{run_id}/rerun", json={"from": "nope"}).status_code == 422


def test_a_fan_out_runs_each_item_and_fans_in_in_order(stack: Stack) -> None:
    run = finished(stack, emit(stack, "test.fan", {"n": 30}))
    assert run["status"] == "succeeded"
    assert task_of(run, "add")["result"] == sum(i * i for i in range(30))
    assert task_of(run, "square")["result"] == [i * i for i in range(30)]
    text = orch("runs", "show", run["id"], env=stack.env).stdout
    assert "square[...]" in text and "more items" in text


def test_a_shell_task_runs_on_a_worker(stack: Stack) -> None:
    run = finished(stack, emit(stack, "test.shell", {"word": "hello"}))
    assert run["status"] == "succeeded" and task_of(run, "after")["result"] == "after hello\n"


def test_a_run_that_outlives_its_timeout_fails_and_cancels_its_tasks(stack: Stack) -> None:
    start = time.monotonic()
    run = finished(stack, emit(stack, "test.too_slow", {}), 20)
    assert run["status"] == "failed" and run["error"] == "the run timed out after 1s"
    assert task_of(run, "slow")["state"] == "cancelled"
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("how", ["cancelled", "timed out"])
def test_a_retried_run_is_not_stopped_again_by_the_cancel_that_ended_it(stack: Stack, how: str) -> None:
    """The cancel marker once named the run, so the heartbeat killed the retried attempt too."""
    kind = "test.patient" if how == "cancelled" else "test.patient_timed"
    run_id = emit(stack, kind, {"first_s": 30})
    wait_for(lambda: task_of(orch_json("runs", "show", run_id, env=stack.env), "patient")["state"] == "running", 20,
             "the first attempt to start")
    if how == "cancelled":
        orch("runs", "cancel", run_id, env=stack.env)
    ended = finished(stack, run_id, 20)
    assert ended["status"] == ("cancelled" if how == "cancelled" else "failed")

    retried = orch_json("runs", "retry", run_id, "--wait", env=stack.env)

    assert retried["status"] == "succeeded", retried
    patient = task_of(retried["result"], "patient")
    assert (patient["state"], patient["attempt"], patient["result"]) == ("succeeded", 2, 2)
