"""Task logs as a user reads them: `orch runs logs --follow` in its own process and the SSE route over
real HTTP, both showing a task's lines while it still runs; one-shot reads per task and attempt; and every
orch process writing JSON lines that name the run, task and attempt (ORCH_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from orchestrator.workflows.runs import derive_run_id

from ..helpers import wait_for
from ..projects import make_project
from .conftest import Stack, orch, start_stack, stop_stack

RULES = """\
rules:
  - {name: slow, type: t.slow, workflow: slow, params: {flag: "{{ data.flag }}"}}
  - {name: retried, type: t.retry, workflow: retried}
"""
WORKFLOWS = {"logged": """\
    import logging
    import time
    from pathlib import Path

    from orchestrator import task, workflow
    from orchestrator.context import current

    @task
    def waits(flag: str) -> str:
        current().logger.info("step one")
        print("a printed line")
        deadline = time.monotonic() + 60  # the test creates the flag; this only bounds a broken test
        while not Path(flag).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        logging.getLogger("logged.module").warning("step two")
        return "done"

    @task(retries={"max_retries": 1, "backoff_s": 0})
    def flaky() -> str:
        ctx = current()
        ctx.logger.info("attempt %d here", ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("try again")
        return "ok"

    @workflow
    def slow(flag: str):
        waits(flag)

    @workflow
    def retried():
        flaky()
"""}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    project = make_project(tmp_path_factory.mktemp("logs-project"), rules=RULES, workflows=WORKFLOWS)
    running = start_stack(tmp_path_factory.mktemp("logs"), project, ORCH_LOG_FORMAT="json")
    yield running
    stop_stack(running)


class Reader:
    """Collects what a process writes to one of its pipes, line by line, as it comes."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def finish(self) -> None:
        """Wait for the end of the stream (the process exited)."""
        self._thread.join(30)


def start_run(stack: Stack, rule: str, type: str, event_id: str, data: dict[str, Any] | None = None) -> str:
    orch("emit", type, "--source", "/e2e", "--id", event_id, "--data", json.dumps(data), env=stack.env)
    run_id = derive_run_id(rule, "/e2e", event_id)
    wait_for(lambda: stack.http().get(f"/runs/{run_id}").status_code == 200, 30, f"run {run_id} to start")
    return run_id


def test_orch_runs_logs_follow_prints_lines_while_the_task_runs_and_exits_when_the_run_ends(
        stack: Stack, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    run_id = start_run(stack, "slow", "t.slow", "follow-cli", {"flag": str(flag)})
    with subprocess.Popen([sys.executable, "-m", "orchestrator", "runs", "logs", run_id, "--follow"],
                          env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as follow:
        assert follow.stdout is not None and follow.stderr is not None
        out, err = Reader(follow.stdout), Reader(follow.stderr)
        try:
            wait_for(lambda: out.has("step one"), 30, "the first line, while the task waits for the flag")
            assert not flag.exists() and follow.poll() is None
            assert err.has("-- waits#1 ")
        finally:
            flag.touch()
        assert follow.wait(60) == 0
        out.finish()
        err.finish()
    assert err.has(f"-- run {run_id} succeeded")

    assert [line.split(" | ", 1)[0] for line in out.lines] == ["waits#1"] * len(out.lines)
    assert out.has("INFO orch.task.slow.waits: step one") and out.has("stdout: a printed line")
    assert out.has("WARNING logged.module: step two")
    assert sum("step one" in line for line in out.lines) == 1, "each line once"


def test_the_logs_route_streams_server_sent_events_while_the_task_runs_until_an_end_event(
        stack: Stack, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    run_id = start_run(stack, "slow", "t.slow", "follow-sse", {"flag": str(flag)})
    events: list[tuple[str, dict[str, Any]]] = []
    try:
        with stack.http().stream("GET", f"/runs/{run_id}/logs", params={"follow": "true"}, timeout=60) as reply:
            assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
            name = ""
            for line in reply.iter_lines():
                if line.startswith("event: "):
                    name = line[len("event: "):]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[len("data: "):])))
                    if any("step one" in text for text in events[-1][1].get("lines", [])):
                        assert not flag.exists()
                        flag.touch()  # only now: the line came while the task still ran
    finally:
        flag.touch()

    assert flag.exists(), "a lines event carried the first line before the task was let go"
    names = [n for n, _ in events]
    assert names[-1] == "end" and events[-1][1]["status"] == "succeeded"
    lines = [text for n, body in events if n == "lines" for text in body["lines"]]
    assert any(t.endswith("step one") for t in lines) and any(t.endswith("step two") for t in lines)
    assert ("task", {"task": "waits", "attempt": 1, "state": "succeeded"}) in events


def test_one_read_shows_the_latest_attempt_or_the_one_asked_for_over_the_cli_and_http(stack: Stack) -> None:
    run_id = start_run(stack, "retried", "t.retry", "retry-1")
    wait_for(lambda: stack.http().get(f"/runs/{run_id}").json()["status"] == "succeeded", 30, "the retried run")

    latest = orch("runs", "logs", run_id, env=stack.env).stdout.splitlines()
    first = orch("runs", "logs", run_id, "--task", "flaky", "--attempt", "1", env=stack.env).stdout.splitlines()
    body = stack.http().get(f"/runs/{run_id}/logs", params={"task": "flaky", "attempt": 1}).json()
    unknown = orch("runs", "logs", run_id, "--task", "flakey", env=stack.env, check=False)
    refused = stack.http().get(f"/runs/{run_id}/logs", params={"task": "flakey"})

    assert [line.split(" | ")[0] for line in latest] == ["flaky#2"] and latest[0].endswith("attempt 2 here")
    assert {line.split(" | ")[0] for line in first} == {"flaky#1"} and first[0].endswith("attempt 1 here")
    assert first[1].endswith("ERROR orch.worker: attempt 1 failed: ConnectionError: try again"), first
    (attempt,) = body["attempts"]
    assert (attempt["task"], attempt["attempt"], attempt["first"], attempt["dropped"]) == ("flaky", 1, 0, 0)
    assert attempt["lines"][0].endswith("attempt 1 here") and body["status"] == "succeeded"
    assert unknown.returncode == 1 and "no task 'flakey'" in unknown.stderr
    assert refused.status_code == 422 and "no task 'flakey'" in refused.json()["error"]
    assert stack.http().get("/runs/nope/logs").status_code == 404


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_every_process_logs_json_lines_naming_the_run_task_and_attempt(stack: Stack) -> None:
    run_id = start_run(stack, "retried", "t.retry", "json-logs")
    wait_for(lambda: stack.http().get(f"/runs/{run_id}").json()["status"] == "succeeded", 30, "the run")

    engine = _json_lines(stack.procs.log("engine"))
    worker = _json_lines(stack.procs.log("worker-0"))
    for name in ("engine", "api"):
        text = stack.procs.log(name)
        assert text.strip() and all(line.startswith("{") for line in text.splitlines()), text[:2000]
    assert {"time", "level", "logger", "message"} <= set(engine[0])
    assert any(e.get("run") == run_id and "started" in e["message"] for e in engine)
    assert any(e.get("run") == run_id and "succeeded" in e["message"] for e in engine)
    about = [(w["task"], w["attempt"]) for w in worker if w.get("run") == run_id and "attempt" in w]
    assert ("flaky", 1) in about and ("flaky", 2) in about, worker[-10:]
