"""A job is data in Redis; anyone who can write one must not be able to make a worker run anything.

Real jobs are made by the engine from a real event, then copied and forged the way an attacker with
write access to Redis would: the command written into every place of the job hash that could carry one
(the payload's fields, its values, the RQ function, the job's meta and description). A real worker then
takes them from the queue. Nothing forged runs: the marker files the forged commands would create never
appear, and each refusal is reported.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from executors.fastpath import job_key, queue_key
from executors.worker import run_worker
from orchestrator.cli.wiring import load_project
from orchestrator.jsonutil import dumps, loads
from orchestrator.settings import Settings
from orchestrator.workflows.records import RecordKind, TaskRecord
from orchestrator.workflows.runs import RunStatus

from ..inproc import Stack
from ..projects import make_project

RULES = """
rules:
  - {name: stamp, type: stamp.requested, workflow: stamp, params: {}}
  - {name: echo, type: echo.requested, workflow: echo, params: {text: "{{ data.text }}"}}
"""


def workflows(marker: Path) -> dict[str, str]:
    return {"flows": f"""
        from orchestrator import run_shell, workflow

        @workflow
        def stamp():
            run_shell("touch", ["touch", "{marker}"])

        @workflow
        def echo(text: str):
            run_shell("say", ["echo", text])
    """}


@pytest.fixture
def stack(r: redis.Redis, settings: Settings, tmp_path: Path) -> Stack:
    project = load_project(make_project(tmp_path / "project", rules=RULES, workflows=workflows(tmp_path / "legit")))
    return Stack(r, settings.model_copy(update={"project": project.root}), project)


def queued_job(stack: Stack, event_type: str, data: Any) -> dict[bytes, bytes]:
    """Emit, let the engine dispatch (no worker yet), and return the job hash it made."""
    stack.emit(event_type, data, source="/test")
    stack.engine.step(block=False)
    (job_id,) = stack.r.lrange(queue_key("orch.default"), 0, -1)
    fields: dict[bytes, bytes] = stack.r.hgetall(job_key(job_id.decode()))
    stack.r.delete(queue_key("orch.default"))  # the real one is not run: only forgeries are
    return fields


def payload_of(fields: dict[bytes, bytes]) -> tuple[str, list[Any], dict[str, Any], dict[str, Any]]:
    func, instance, args, kwargs = loads(zlib.decompress(fields[b"data"]))
    return func, args, kwargs, args[0]


def enqueue(r: redis.Redis, fields: dict[bytes, bytes], job_id: str, *, func: str | None = None,
            payload: dict[str, Any] | None = None, rq_kwargs: dict[str, Any] | None = None) -> None:
    original, args, kwargs, _ = payload_of(fields)
    data = [func or original, None, [payload] if payload is not None else args, rq_kwargs or kwargs]
    forged = {**fields, b"data": zlib.compress(dumps(data)), b"status": b"queued"}
    r.hset(job_key(job_id), mapping=forged)
    r.rpush(queue_key("orch.default"), job_id)


def records(r: redis.Redis) -> list[TaskRecord]:
    return [TaskRecord.from_fields(f) for _, f in r.xrange("orch:results") if b"r" in f]


def test_a_command_written_into_every_place_of_a_real_job_never_runs(stack: Stack, tmp_path: Path) -> None:
    fields = queued_job(stack, "stamp.requested", {})
    _, _, _, real = payload_of(fields)
    assert set(real) == {"workflow", "version", "node", "run", "attempt", "args"}, "a job names, it never says"
    pwned = tmp_path / "pwned"
    command = ["touch", str(pwned)]
    forged_payload = {**real, "args": command, "kind": "shell", "task": "shell", "command": command,
                      "kwargs": {"command": command}, "shell": True, "timeout_s": 1}
    everywhere = {**fields, b"description": f"touch {pwned}".encode(),
                  b"meta": dumps({**loads(fields[b"meta"]), "command": command})}
    enqueue(stack.r, everywhere, "forged-everywhere", payload=forged_payload)
    enqueue(stack.r, fields, "forged-values", payload={**real, "args": command})
    enqueue(stack.r, fields, "forged-kwargs", rq_kwargs={"command": command, "kind": "shell"})
    enqueue(stack.r, fields, "forged-function", func="os.system", payload=f"touch {pwned}")  # type: ignore[arg-type]
    enqueue(stack.r, fields, "forged-version", payload={**real, "version": "000000000000"})
    enqueue(stack.r, fields, "forged-workflow", payload={**real, "workflow": "echo", "args": [f"; touch {pwned}"]})

    run_worker(stack.r, stack.settings, stack.project, ["default"], burst=True)

    assert not pwned.exists(), "a forged command ran"
    assert not (tmp_path / "legit").exists(), "a forged job ran the real command"
    statuses = {j: stack.r.hget(job_key(j), "status") for j in (
        "forged-everywhere", "forged-values", "forged-kwargs", "forged-function", "forged-version", "forged-workflow")}
    assert set(statuses.values()) == {b"failed"}, statuses
    refused = {r.error_type for r in records(stack.r) if r.kind is RecordKind.FAILED}
    assert {"ForgedJob", "UnknownWorkflowVersion"} <= refused
    assert not [r for r in records(stack.r) if r.kind is RecordKind.STARTED], "nothing was started"


def test_the_same_job_unforged_runs_its_own_command(stack: Stack, tmp_path: Path) -> None:
    """The control: the job copied as it was does run (so the forgeries above failed for their forging)."""
    fields = queued_job(stack, "stamp.requested", {})
    enqueue(stack.r, fields, fields[b"id"].decode() if b"id" in fields else "copy")

    run_worker(stack.r, stack.settings, stack.project, ["default"], burst=True)
    stack.drain()

    assert (tmp_path / "legit").exists()
    (run_id,) = [m.decode() for m in stack.r.zrange("orch:runs", 0, -1)]
    run = stack.engine.store.get(run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED


def test_values_in_a_forged_job_stay_data(stack: Stack, tmp_path: Path) -> None:
    """A value sits only where the spec put a slot: one argv element, however it is written."""
    fields = queued_job(stack, "echo.requested", {"text": "hello"})
    _, _, _, real = payload_of(fields)
    pwned = tmp_path / "pwned"
    enqueue(stack.r, fields, "forged-text", payload={**real, "args": [f"$(touch {pwned}); `touch {pwned}`"]})

    run_worker(stack.r, stack.settings, stack.project, ["default"], burst=True)

    assert not pwned.exists()
    (done,) = [r for r in records(stack.r) if r.kind is RecordKind.SUCCEEDED]
    assert done.result["stdout"] == f"$(touch {pwned}); `touch {pwned}`\n"


MALFORMED: dict[str, bytes] = {
    "args-a-dict": zlib.compress(dumps(["executors.runner.run_task", None, {"x": 1}, {}])),
    "args-a-number": zlib.compress(dumps(["executors.runner.run_task", None, 7, {}])),
    "args-a-string": zlib.compress(dumps(["executors.runner.run_task", None, "abc", {}])),
    "kwargs-a-list": zlib.compress(dumps(["executors.runner.run_task", None, [], [1]])),
    "data-too-short": zlib.compress(dumps(["executors.runner.run_task"])),
    "data-an-object": zlib.compress(dumps({"func": "executors.runner.run_task"})),
    "data-not-json": zlib.compress(b"\x80\x04\x95 pickle?"),
    "data-not-zlib": b"not compressed at all",
    "payload-of-wrong-types": zlib.compress(dumps(["executors.runner.run_task", None, [
        {"workflow": ["x"], "version": {}, "node": 1, "run": None, "attempt": "1", "args": "no"}], {}])),
}


HASH_GARBAGE: dict[str, dict[bytes, bytes]] = {
    "timeout-not-a-number": {b"timeout": b"soon"},
    "meta-not-json": {b"meta": b"\x80not json"},
    "dates-not-dates": {b"created_at": b"yesterday", b"enqueued_at": b"\xff"},
    "origin-elsewhere": {b"origin": b"rq:queue:../../x"},
}


@pytest.mark.parametrize("engine", ["fast", "rq"])
def test_malformed_jobs_fail_one_by_one_and_the_worker_goes_on(stack: Stack, tmp_path: Path, engine: str) -> None:
    """Garbage in a job hash fails that job; it never crashes the worker (which would take the job back
    at the front of its queue and crash again on every restart)."""
    fields = queued_job(stack, "stamp.requested", {})
    for job_id, data in MALFORMED.items():
        stack.r.hset(job_key(job_id), mapping={**fields, b"data": data, b"status": b"queued"})
        stack.r.rpush(queue_key("orch.default"), job_id)
    for job_id, garbage in HASH_GARBAGE.items():
        stack.r.hset(job_key(job_id), mapping={**fields, **garbage, b"status": b"queued"})
        stack.r.rpush(queue_key("orch.default"), job_id)
    enqueue(stack.r, fields, "the-real-one")

    run_worker(stack.r, stack.settings, stack.project, ["default"], burst=True, engine=engine)

    statuses = {job_id: stack.r.hget(job_key(job_id), "status") for job_id in [*MALFORMED, *HASH_GARBAGE]}
    assert (tmp_path / "legit").exists(), f"the job after the garbage ran ({statuses})"
    assert {statuses[job_id] for job_id in MALFORMED} == {b"failed"}, statuses
    # a genuine payload in a hash with garbage beside it is the project's own task: run or failed, not stuck;
    # a hash RQ cannot read is dropped (the engine's stall sweep then retries its task as JobLost)
    assert {statuses[job_id] for job_id in HASH_GARBAGE} <= {b"failed", b"finished", None}, statuses
    assert statuses["timeout-not-a-number"] is None
    assert stack.r.llen(queue_key("orch.default")) == 0


def test_the_fast_worker_goes_on_past_ttls_redis_refuses_and_ids_that_are_not_utf8(stack: Stack,
                                                                                   tmp_path: Path) -> None:
    """A forged job whose TTLs are integers Redis refuses as an EXPIRE: the finish is refused for good, so it
    is dropped, not sent again for ever (which stopped the worker with the next job stuck in its claimed
    list). An id that is not UTF-8 is no orch job: dropped with its hash, where it ended the worker. (RQ's
    own SimpleWorker, `--engine rq`, quits on both, as stock RQ does.)"""
    fields = queued_job(stack, "stamp.requested", {})
    huge = b"99999999999999999"
    stack.r.hset(job_key("ttls"), mapping={**fields, b"result_ttl": huge, b"failure_ttl": huge, b"status": b"queued"})
    stack.r.rpush(queue_key("orch.default"), "ttls")
    not_utf8 = b"\xff\xfe-forged"
    stack.r.hset(job_key("").encode() + not_utf8, mapping={**fields, b"status": b"queued"})
    stack.r.rpush(queue_key("orch.default"), not_utf8)
    enqueue(stack.r, fields, "the-real-one")

    run_worker(stack.r, stack.settings, stack.project, ["default"], burst=True)

    assert stack.r.hget(job_key("ttls"), "status") == b"finished"
    assert stack.r.hget(job_key("the-real-one"), "status") == b"finished", "the job after them ran"
    assert not stack.r.exists(job_key("").encode() + not_utf8)
    assert stack.r.llen(queue_key("orch.default")) == 0
    assert not stack.r.keys("orch:worker:*:claimed"), "nothing left claimed"


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.server.hits.append((self.path, self.headers.get("authorization")))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def recording_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_forged_url_cannot_take_the_specs_secret_header_elsewhere(r: redis.Redis, settings: Settings,
                                                                    tmp_path: Path) -> None:
    """A URL template's value keeps the template's fixed text: a forged job cannot point the request, and
    the credentials the spec adds to it, at another host or port."""
    with recording_server() as partner, recording_server() as attacker:
        root = make_project(tmp_path / "project", rules="""
rules:
  - {name: notify, type: order.paid, workflow: notify, params: {order: "{{ data.order }}"}}
""")
        (root / "workflows" / "notify.yaml").write_text(f"""
workflows:
  - name: notify
    params: [order]
    tasks:
      - name: tell
        http:
          url: "http://127.0.0.1:{partner.server_port}/orders/{{{{ params.order }}}}"
          method: POST
          headers: {{Authorization: "Bearer s3cr3t"}}
""")
        allowed = settings.model_copy(update={"project": root, "http_allow": ("127.0.0.1",)})
        stack = Stack(r, allowed, load_project(root))
        fields = queued_job(stack, "order.paid", {"order": "A-1"})
        _, _, _, real = payload_of(fields)
        assert real["args"] == [f"http://127.0.0.1:{partner.server_port}/orders/A-1"]
        elsewhere = f"http://127.0.0.1:{attacker.server_port}/steal"
        enqueue(stack.r, fields, "forged-url", payload={**real, "args": [elsewhere]})
        enqueue(stack.r, fields, "forged-host-in-path", payload={
            **real, "args": [f"http://127.0.0.1:{attacker.server_port}/orders/A-1"]})
        enqueue(stack.r, fields, "real-url", payload=real)

        run_worker(stack.r, stack.settings, stack.project, ["default"], burst=True)

        assert attacker.hits == []  # type: ignore[attr-defined]
        assert partner.hits == [("/orders/A-1", "Bearer s3cr3t")]  # type: ignore[attr-defined]
        refused = [r for r in records(stack.r) if r.kind is RecordKind.FAILED]
        assert [r.error_type for r in refused] == ["ForgedJob", "ForgedJob"]
