"""⑥ + ⑦ Task kinds and the task context: `run_task` in-process against a real Redis, real child
processes (shell) and a real HTTP server (http), checked through the records on the results stream."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from executors import runner
from executors.catalog import Catalog
from executors.dispatch import RQDispatcher
from executors.kinds.errors import TaskFailure
from executors.runner import WorkerContext, install, run_task
from executors.worker import run_worker
from orchestrator import task
from orchestrator.cli.wiring import load_project
from orchestrator.context import current
from orchestrator.events.recent import recent_events
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.logs import read as read_attempt_logs
from orchestrator.workflows.advance import Dispatch
from orchestrator.workflows.records import RecordKind, TaskRecord
from orchestrator.workflows.spec import NodeSpec, build_spec

from ..helpers import free_port, wait_for
from ..projects import make_project


class PermanentError(Exception):
    retryable = False


@task
def charge(order_id: str) -> dict[str, Any]:
    ctx = current()
    ctx.logger.info("charging %s", order_id)
    logging.getLogger("tests.module").warning("a line from the module's logger")
    print("a printed line")
    event_id = ctx.emit("order.charged", {"order_id": order_id}, id=f"{ctx.key}:charged")
    return {"attempt": ctx.attempt, "key": ctx.key, "run": ctx.run_id, "workflow": ctx.workflow,
            "node": ctx.node, "event": event_id}


@task
async def charge_async() -> list[Any]:
    ctx = current()
    ctx.logger.info("from a coroutine")
    return [ctx.attempt, ctx.node]


@task
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "woke up"


@task
async def sleepy_async(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "woke up"


@task
def swallows_errors() -> str:
    try:
        time.sleep(5)
    except Exception:  # a timeout is not an Exception: this does not stop it
        return "swallowed"
    return "woke up"


@task
def quick() -> str:
    return "done"


@task
def refuses() -> None:
    raise PermanentError("this input can never work")


@task
def breaks() -> None:
    raise ValueError("flaky")


@task
def not_json() -> object:
    return object()


@task
def exits() -> None:
    current().logger.info("about to exit")
    raise SystemExit(3)


TASKS = [exits, charge, charge_async, sleepy, sleepy_async, swallows_errors, quick, refuses, breaks, not_json]


@pytest.fixture
def worker(r: redis.Redis, settings: Settings) -> Iterator[WorkerContext]:
    local = settings.model_copy(update={"http_allow": ("127.0.0.1",)})  # the test servers are on loopback
    catalog = Catalog((), {t.name: t for t in TASKS}, settings.task_timeout_s)
    context = WorkerContext(client=r, keys=Keys(settings.key_prefix), catalog=catalog, worker="test-worker",
                            settings=local)
    install(context)
    yield context
    install(None)


def payload(task: str, *, kind: str = "python", args: list[Any] | None = None, kwargs: dict[str, Any] | None = None,
            timeout_s: float | None = None, attempt: int = 1, node: str | None = None) -> dict[str, Any]:
    """The job of a one-task workflow `wf` whose arguments are written out (so the job carries no values);
    the workflow version is added to the installed worker's catalog, as a worker loads its project."""
    step = NodeSpec(name=node or task, task=task, kind=kind, args=tuple({"$lit": a} for a in args or ()),
                    kwargs={k: {"$lit": v} for k, v in (kwargs or {}).items()}, timeout_s=timeout_s)
    spec = build_spec("wf", (), [step])
    context = runner._context
    assert context is not None
    context.catalog.add(spec)
    return {"workflow": "wf", "version": spec.digest, "node": step.name, "run": "run-1", "attempt": attempt,
            "args": []}


def records(r: redis.Redis) -> list[TaskRecord]:
    return [TaskRecord.from_fields(fields) for _, fields in r.xrange("orch:results")]


def logs_of(r: redis.Redis, node: str, attempt: int = 1) -> list[str]:
    """An attempt's log lines as the worker stored them (read as `orch runs logs` reads them)."""
    (log,) = read_attempt_logs(r, Keys(), "run-1", [(node, attempt, 0)])
    return log.lines


def attempt(r: redis.Redis, body: dict[str, Any]) -> TaskRecord:
    """Run one attempt; its final record (the entry point re-raises failures, as RQ expects)."""
    before = r.xlen("orch:results")
    try:
        run_task(body)
    except Exception:
        pass
    final = records(r)[before:][-1]
    assert final.kind is not RecordKind.STARTED
    return final


# -- python ----------------------------------------------------------------------------------------------

def test_a_python_task_sees_its_context_and_its_logs_and_events_are_kept(worker: WorkerContext,
                                                                          r: redis.Redis) -> None:
    result = run_task(payload("charge", args=["A-1"], attempt=2))

    assert result == {"attempt": 2, "key": "run-1:charge", "run": "run-1", "workflow": "wf", "node": "charge",
                      "event": "run-1:charge:charged"}
    started, succeeded = records(r)
    assert (started.kind, succeeded.kind) == (RecordKind.STARTED, RecordKind.SUCCEEDED)
    assert succeeded.result == result and succeeded.attempt == 2
    logs = "\n".join(logs_of(r, "charge", attempt=2))
    assert "INFO orch.task.wf.charge: charging A-1" in logs
    assert "WARNING tests.module: a line from the module's logger" in logs
    assert "stdout: a printed line" in logs
    (event,) = recent_events(r, worker.keys, type_glob="order.charged")
    assert (event["orchrun"], event["orchtask"], event["source"]) == ("run-1", "charge", "/orch/wf/charge")
    assert event["data"] == {"order_id": "A-1"}


def test_a_retried_emit_with_an_id_from_the_key_publishes_once(worker: WorkerContext, r: redis.Redis) -> None:
    run_task(payload("charge", args=["A-2"], attempt=1))
    run_task(payload("charge", args=["A-2"], attempt=2))

    assert len(recent_events(r, worker.keys, type_glob="order.charged")) == 1


def test_a_coroutine_task_sees_its_context(worker: WorkerContext, r: redis.Redis) -> None:
    assert run_task(payload("charge_async", attempt=3)) == [3, "charge_async"]
    assert any("from a coroutine" in line for line in logs_of(r, "charge_async", attempt=3))


def test_an_attempt_stopped_by_system_exit_still_ships_its_lines_and_closes_its_log(worker: WorkerContext,
                                                                                     r: redis.Redis) -> None:
    with pytest.raises(SystemExit):  # the worker itself is stopping: no record ends the attempt
        run_task(payload("exits"))

    assert worker.logs().attempts_open() == [], "its buffer is no longer shipped"
    assert any(line.endswith("INFO orch.task.wf.exits: about to exit") for line in logs_of(r, "exits"))
    assert [record.kind for record in records(r)] == [RecordKind.STARTED]


def test_an_unknown_task_is_refused_for_good_without_starting(worker: WorkerContext, r: redis.Redis) -> None:
    with pytest.raises(TaskFailure, match="not registered"):
        run_task(payload("nope"))

    (failed,) = records(r)
    assert (failed.kind, failed.error_type, failed.retryable) == (RecordKind.FAILED, "UnknownTaskError", False)


@pytest.mark.parametrize(("name", "error_type", "retryable"), [
    ("refuses", "PermanentError", False),
    ("breaks", "ValueError", None),
    ("not_json", "ResultNotJSON", False),
])
def test_failures_carry_their_type_and_whether_a_retry_may_help(worker: WorkerContext, r: redis.Redis, name: str,
                                                                error_type: str, retryable: bool | None) -> None:
    failed = attempt(r, payload(name))

    assert (failed.kind, failed.error_type, failed.retryable) == (RecordKind.FAILED, error_type, retryable)
    assert failed.error and failed.error.startswith(error_type)


def test_a_python_task_is_stopped_at_its_time_limit_and_the_next_one_runs(worker: WorkerContext,
                                                                          r: redis.Redis) -> None:
    handler = signal.getsignal(signal.SIGALRM)
    began = time.monotonic()
    with pytest.raises(TaskFailure, match="time limit"):
        run_task(payload("sleepy", args=[10], timeout_s=0.3))
    timed_out = records(r)[-1]
    swallowed = attempt(r, payload("swallows_errors", timeout_s=0.3))
    awaited = attempt(r, payload("sleepy_async", args=[10], timeout_s=0.3))
    ran = run_task(payload("quick"))

    assert time.monotonic() - began < 3
    assert (timed_out.kind, timed_out.error_type, timed_out.retryable) == (RecordKind.FAILED, "TaskTimeout", None)
    assert "sleepy" in (timed_out.error or "") and "time.sleep" in (timed_out.error or "")  # where it was stopped
    assert (swallowed.kind, swallowed.error_type) == (RecordKind.FAILED, "TaskTimeout")
    assert (awaited.kind, awaited.error_type) == (RecordKind.FAILED, "TaskTimeout")
    assert ran == "done" and records(r)[-1].kind is RecordKind.SUCCEEDED
    assert signal.getsignal(signal.SIGALRM) is handler


def test_the_default_time_limit_comes_from_the_settings(r: redis.Redis, redis_url: str) -> None:
    install(WorkerContext(client=r, keys=Keys("orch"), catalog=Catalog((), {"sleepy": sleepy}, 1.0), worker="w",
                          settings=Settings(redis_url=redis_url, task_timeout_s=1)))
    try:
        failed = attempt(r, payload("sleepy", args=[10]))
    finally:
        install(None)

    assert failed.error_type == "TaskTimeout"


def test_an_rq_worker_survives_a_timed_out_task_and_runs_the_next(r: redis.Redis, settings: Settings,
                                                                 tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path, workflows={"tasks": """
        import time
        from orchestrator import task, workflow

        @task
        def sleepy(seconds: float) -> str:
            time.sleep(seconds)
            return "woke up"

        @task
        def quick() -> str:
            return "done"

        @workflow
        def wf():
            sleepy.with_options(timeout_s=0.3)(10)
            quick()
    """}))
    version = project.workflows["wf"].spec.digest
    jobs = [Dispatch(run_id="run-1", workflow="wf", version=version, node=name, task=name, attempt=1,
                     queue="default", job_id=f"run-1-{name}-1", args=[], timeout_s=timeout_s)
            for name, timeout_s in (("sleepy", 0.3), ("quick", None))]
    with r.pipeline() as pipe:
        pipe.multi()
        RQDispatcher(r, settings).dispatch(pipe, jobs)
        pipe.execute()

    began = time.monotonic()
    try:
        assert run_worker(r, settings, project, ["default"], burst=True, name="rq-test")
    finally:
        install(None)

    assert time.monotonic() - began < 5
    finals = {rec.node: rec for rec in records(r) if rec.kind is not RecordKind.STARTED}
    assert (finals["sleepy"].kind, finals["sleepy"].error_type) == (RecordKind.FAILED, "TaskTimeout")
    assert (finals["quick"].kind, finals["quick"].result) == (RecordKind.SUCCEEDED, "done")


# -- shell -----------------------------------------------------------------------------------------------

def shell(r: redis.Redis, timeout_s: float | None = None, **options: Any) -> TaskRecord:
    return attempt(r, payload("sh", kind="shell", kwargs=options, timeout_s=timeout_s, node="step"))


def test_a_shell_command_runs_with_its_output_in_the_result_and_the_logs(worker: WorkerContext, r: redis.Redis,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_REDIS_URL", "redis://:secret@127.0.0.1:1/0")
    script = 'echo hello; echo oops >&2; echo "$ORCH_NODE $ORCH_IDEMPOTENCY_KEY $GREETING ${ORCH_REDIS_URL-unset}"'

    done = shell(r, command=["/bin/sh", "-c", script], env={"GREETING": "hi"})

    assert done.kind is RecordKind.SUCCEEDED, done.error
    assert done.result == {"exit_code": 0, "stdout": "hello\nstep run-1:step hi unset\n", "stderr": "oops\n"}
    assert {"stdout: hello", "stderr: oops", "stdout: step run-1:step hi unset"} <= set(logs_of(r, "step"))


def test_a_command_string_is_split_without_a_shell_unless_asked(worker: WorkerContext, r: redis.Redis) -> None:
    split = shell(r, command="echo 'a  b' $HOME")
    with_shell = shell(r, command="echo one | tr o 0", shell=True)

    assert split.result["stdout"] == "a  b $HOME\n"
    assert with_shell.result["stdout"] == "0ne\n"


def test_a_non_zero_exit_fails_the_task(worker: WorkerContext, r: redis.Redis) -> None:
    failed = shell(r, command="echo bad input >&2; exit 3", shell=True)

    assert (failed.kind, failed.error_type, failed.retryable) == (RecordKind.FAILED, "ShellExitError", None)
    assert "exited with status 3: bad input" in (failed.error or "")
    assert "stderr: bad input" in logs_of(r, "step")


def test_invalid_shell_options_are_final(worker: WorkerContext, r: redis.Redis) -> None:
    failed = shell(r, command=["echo", 1])

    assert (failed.error_type, failed.retryable) == ("InvalidTaskOptions", False)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead, waiting for a reaper
    except psutil.NoSuchProcess:
        return True


def test_a_timeout_kills_the_whole_process_group(worker: WorkerContext, r: redis.Redis, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    began = time.monotonic()

    failed = shell(r, timeout_s=0.5, command=f"echo started; sleep 30 & echo $! > {pidfile}; wait", shell=True)

    assert time.monotonic() - began < 3
    assert (failed.kind, failed.error_type) == (RecordKind.FAILED, "TaskTimeout")
    assert "process group was killed" in (failed.error or "")
    assert "stdout: started" in logs_of(r, "step")
    child = int(pidfile.read_text())
    wait_for(lambda: gone(child), 5, f"the command's child {child} to be killed")


def test_what_a_command_leaves_running_is_stopped_when_it_exits(worker: WorkerContext, r: redis.Redis,
                                                                tmp_path: Path) -> None:
    pidfile = tmp_path / "left.pid"

    done = shell(r, command=f"sleep 30 > /dev/null 2>&1 & echo $! > {pidfile}", shell=True)

    assert done.kind is RecordKind.SUCCEEDED
    left = int(pidfile.read_text())
    wait_for(lambda: gone(left), 5, f"the leftover process {left} to be stopped")


# -- http ------------------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?")[0]
        if path == "/order":
            self.reply(200, json.dumps({"order_id": "A-1", "query": self.path.partition("?")[2]}).encode(),
                       "application/json")
        elif path == "/status/404":
            self.reply(404, b"no such order", "text/plain")
        elif path == "/status/503":
            self.reply(503, b"try later", "text/plain")
        elif path == "/big":
            self.reply(200, b"x" * 4096, "text/plain")
        elif path == "/stream":  # no content-length: the body ends when the connection closes
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(8):
                self.wfile.write(b"y" * 1024)
        else:
            self.reply(404, b"", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        echo = {"body": json.loads(body), "idempotency_key": self.headers.get("Idempotency-Key")}
        self.reply(201, json.dumps(echo).encode(), "application/problem+json")

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def http(r: redis.Redis, **options: Any) -> TaskRecord:
    return attempt(r, payload("call", kind="http", kwargs=options, timeout_s=5))


def test_an_http_task_returns_the_parsed_json_response(worker: WorkerContext, r: redis.Redis, server: str) -> None:
    done = http(r, url=f"{server}/order", params={"page": 2})

    assert done.kind is RecordKind.SUCCEEDED, done.error
    assert done.result["status"] == 200
    assert done.result["body"] == {"order_id": "A-1", "query": "page=2"}
    assert done.result["headers"]["content-type"] == "application/json"
    assert any(f"GET {server}/order -> 200 OK (38 bytes, " in line for line in logs_of(r, "call"))


def test_an_http_task_sends_its_idempotency_key_and_json(worker: WorkerContext, r: redis.Redis, server: str) -> None:
    sent = http(r, method="POST", url=f"{server}/orders", json={"amount": 5})
    without = http(r, method="POST", url=f"{server}/orders", json={}, idempotency_key=False)

    assert sent.result == {"status": 201, "headers": sent.result["headers"],
                           "body": {"body": {"amount": 5}, "idempotency_key": "run-1:call"}}
    assert without.result["body"]["idempotency_key"] is None


@pytest.mark.parametrize(("path", "retryable"), [("/status/404", False), ("/status/503", True)])
def test_an_error_status_fails_retryable_only_when_a_retry_may_help(worker: WorkerContext, r: redis.Redis,
                                                                    server: str, path: str, retryable: bool) -> None:
    failed = http(r, url=f"{server}{path}")

    assert (failed.kind, failed.error_type, failed.retryable) == (RecordKind.FAILED, "HTTPStatusError", retryable)
    assert f"GET {server}{path} -> {path[-3:]}" in (failed.error or "")


def test_a_refused_connection_may_be_retried(worker: WorkerContext, r: redis.Redis) -> None:
    failed = http(r, url=f"http://127.0.0.1:{free_port()}/")

    assert (failed.kind, failed.error_type, failed.retryable) == (RecordKind.FAILED, "ConnectError", True)


@pytest.mark.parametrize("path", ["/big", "/stream"])
def test_a_body_over_the_bound_fails(worker: WorkerContext, r: redis.Redis, server: str, path: str) -> None:
    failed = http(r, url=f"{server}{path}", max_response_bytes=2048)

    assert (failed.kind, failed.error_type, failed.retryable) == (RecordKind.FAILED, "ResponseTooLarge", False)
