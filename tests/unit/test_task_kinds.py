"""Task kinds and the task context, without Redis: options, classification, log capture, time limits."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Any

import pytest

from executors.attempt import Attempt, LogBuffer, attempt_scope, task_logger, time_limit
from executors.kinds.errors import (
    HTTPStatusError,
    InvalidTaskOptions,
    TaskFailure,
    UnknownTaskError,
    classify,
)
from executors.kinds.http import DEFAULT_MAX_RESPONSE_BYTES, HTTPOptions, response_body
from executors.kinds.shell import ShellOptions, command_env
from orchestrator.context import TaskContext, TaskTimeout, current, use
from orchestrator.errors import TaskError
from orchestrator.events.causation import current_cause


def make_attempt(kind: str = "python", **kwargs: Any) -> Attempt:
    logs = LogBuffer()
    ctx = TaskContext(run_id="run-1", workflow="wf", task="t", node="n", attempt=2, key="run-1:n",
                      logger=task_logger("wf", "n", logs))
    return Attempt(ctx=ctx, kind=kind, args=[], kwargs=kwargs, timeout_s=5.0, logs=logs)


# -- the log buffer --------------------------------------------------------------------------------------

def test_the_log_buffer_keeps_the_last_lines_and_says_how_many_went() -> None:
    buffer = LogBuffer(max_lines=3)
    for i in range(5):
        buffer.add(f"line {i}")

    assert buffer.lines() == ["… 2 earlier line(s) dropped", "line 2", "line 3", "line 4"]


def test_the_log_buffer_is_bounded_in_bytes_and_splits_lines() -> None:
    buffer = LogBuffer(max_lines=100, max_bytes=20)
    buffer.add("aaaaaaaa\nbbbbbbbb\ncccccccc")

    assert buffer.lines() == ["… 1 earlier line(s) dropped", "bbbbbbbb", "cccccccc"]


def test_a_very_long_line_is_cut() -> None:
    buffer = LogBuffer()
    buffer.add("x" * 10_000)

    (line,) = buffer.lines()
    assert line.startswith("x" * 4096) and line.endswith("(5904 more characters)")


# -- classifying failures ------------------------------------------------------------------------------

class Final(Exception):
    retryable = False


class Odd(Exception):
    retryable = "maybe"


@pytest.mark.parametrize(("exc", "expected"), [
    (UnknownTaskError("x"), ("UnknownTaskError", False)),
    (TaskFailure("x", error_type="ConnectError", retryable=True), ("ConnectError", True)),
    (TaskTimeout("late"), ("TaskTimeout", None)),
    (Final(), ("Final", False)),
    (Odd(), ("Odd", None)),
    (ValueError(), ("ValueError", None)),
])
def test_failures_are_classified(exc: BaseException, expected: tuple[str, bool | None]) -> None:
    assert classify(exc) == expected


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (404, False), (408, True), (409, False),
                                                   (429, True), (500, True), (503, True), (301, False)])
def test_http_statuses_are_retryable_only_when_a_retry_may_help(status: int, retryable: bool) -> None:
    assert HTTPStatusError("x", status=status).retryable is retryable


def test_a_task_timeout_is_not_an_exception() -> None:
    assert not issubclass(TaskTimeout, Exception)


# -- shell options ---------------------------------------------------------------------------------------

def test_shell_commands_run_without_a_shell_unless_asked() -> None:
    assert ShellOptions.parse([], {"command": ["ls", "-l"]}).argv == ["ls", "-l"]
    assert ShellOptions.parse([], {"command": "grep 'a b' *.txt"}).argv == ["grep", "a b", "*.txt"]
    assert ShellOptions.parse([], {"command": "ls *.txt | wc", "shell": True}).argv == ["/bin/sh", "-c",
                                                                                         "ls *.txt | wc"]


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ([], {}, "'command' must be"),
    ([], {"command": "  "}, "'command' must be"),
    ([], {"command": ["ls", 1]}, "'command' must be"),
    ([], {"command": ["ls"], "shell": True}, "takes a command string"),
    ([], {"command": "ls", "shell": "yes"}, "'shell' must be"),
    ([], {"command": "ls", "env": {"A": ["x"]}}, "'env' must"),
    ([], {"command": "ls", "cwd": 3}, "'cwd' must"),
    ([], {"command": "ls", "timeout": 3}, "unknown shell option"),
    (["ls"], {}, "keyword options only"),
])
def test_invalid_shell_options_are_named(args: list[Any], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTaskOptions, match=message):
        ShellOptions.parse(args, kwargs)


def test_a_command_gets_the_workers_environment_without_orch_settings() -> None:
    env = command_env({"PATH": "/bin", "ORCH_REDIS_URL": "redis://:pw@h/0", "ORCH_NODE": "spoofed"},
                      make_attempt(), {"GREETING": "hi", "PATH": "/opt/bin"})

    assert env == {"PATH": "/opt/bin", "GREETING": "hi", "ORCH_RUN_ID": "run-1", "ORCH_WORKFLOW": "wf",
                   "ORCH_NODE": "n", "ORCH_ATTEMPT": "2", "ORCH_IDEMPOTENCY_KEY": "run-1:n"}


# -- http options and bodies -----------------------------------------------------------------------------

def test_http_options_have_defaults() -> None:
    options = HTTPOptions.parse([], {"url": "https://example.com/x", "method": "post"})

    assert (options.method, options.max_response_bytes, options.timeout_s) == ("POST", DEFAULT_MAX_RESPONSE_BYTES,
                                                                               None)
    assert options.idempotency_key and options.follow_redirects


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "'url' must be"),
    ({"url": "ftp://example.com"}, "'url' must be"),
    ({"url": "http://exa mple.com:x/"}, "not a valid URL"),
    ({"url": "http://h", "method": "FETCH"}, "'method' must be"),
    ({"url": "http://h", "headers": {"X": 1}}, "'headers' must"),
    ({"url": "http://h", "params": {"a": {"b": 1}}}, "'params' must"),
    ({"url": "http://h", "max_response_bytes": 0}, "positive integer"),
    ({"url": "http://h", "max_response_bytes": 1.5}, "positive integer"),
    ({"url": "http://h", "timeout_s": True}, "positive number"),
    ({"url": "http://h", "idempotency_key": "no"}, "true or false"),
    ({"url": "http://h", "body": "x"}, "unknown http option"),
])
def test_invalid_http_options_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTaskOptions, match=message):
        HTTPOptions.parse([], kwargs)


@pytest.mark.parametrize(("content_type", "body", "expected"), [
    ("application/json", b'{"a": 1}', {"a": 1}),
    ("application/problem+json; charset=utf-8", b"[1, 2]", [1, 2]),
    ("application/json", b"{not json", "{not json"),
    ("application/json", b"NaN", "NaN"),
    ("text/plain", b"hello", "hello"),
    ("", b"", None),
])
def test_response_bodies_are_json_when_they_say_so(content_type: str, body: bytes, expected: Any) -> None:
    assert response_body(content_type, body, None) == expected


# -- the task context ------------------------------------------------------------------------------------

def test_the_context_exists_only_inside_a_task() -> None:
    with pytest.raises(TaskError, match="only available while"):
        current()
    with use(TaskContext(task="charge")) as ctx:
        assert current() is ctx
    with pytest.raises(TaskError):
        current()


def test_emit_carries_the_cause_even_from_another_thread() -> None:
    sent: list[tuple[str, Any, dict[str, Any], Any]] = []

    def emitter(type: str, data: Any = None, **attributes: Any) -> str:
        sent.append((type, data, attributes, current_cause()))
        return "id-1"

    ctx = TaskContext(run_id="run-1", workflow="wf", node="n", emitter=emitter)
    thread = threading.Thread(target=ctx.emit, args=("a.b", {"x": 1}), kwargs={"subject": "s"})
    thread.start()
    thread.join()

    ((type_, data, attributes, cause),) = sent
    assert (type_, data, attributes) == ("a.b", {"x": 1}, {"subject": "s", "source": "/orch/wf/n"})
    assert cause is not None and cause.extensions() == {"orchrun": "run-1", "orchtask": "n"}


def test_an_attempt_scope_captures_logs_and_prints_and_restores_everything() -> None:
    attempt = make_attempt()
    stdout = sys.stdout

    with attempt_scope(attempt, limit=False):
        assert current() is attempt.ctx and current_cause() is not None
        attempt.ctx.logger.info("from the task logger")
        attempt.ctx.logger.debug("not kept")
        logging.getLogger("tests.other").error("from another logger")
        print("printed", "twice\nand more", end="")

    assert sys.stdout is stdout and current_cause() is None
    lines = attempt.logs.lines()
    assert [line.split(" ", 1)[1] for line in lines[:2]] == ["INFO orch.task.wf.n: from the task logger",
                                                            "ERROR tests.other: from another logger"]
    assert lines[2:] == ["stdout: printed twice", "stdout: and more"]
    logging.getLogger("tests.other").error("outside the attempt")
    assert len(attempt.logs.lines()) == 4


# -- time limits -----------------------------------------------------------------------------------------

def test_a_time_limit_interrupts_python_code_and_puts_the_outer_timer_back() -> None:
    handler = signal.getsignal(signal.SIGALRM)
    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    began = time.monotonic()

    with pytest.raises(TaskTimeout, match="time limit of 0.1s"), time_limit(0.1, "sleeper"):
        time.sleep(5)

    assert time.monotonic() - began < 2
    assert signal.getsignal(signal.SIGALRM) is handler
    remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    assert (remaining > 0) == (outer > 0)


def test_outside_the_main_thread_a_time_limit_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    finished: list[bool] = []

    def body() -> None:
        with time_limit(0.01, "threaded"):
            time.sleep(0.05)
        finished.append(True)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()

    assert finished == [True]
    assert "not enforced in-process" in caplog.text
