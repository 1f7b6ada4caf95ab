"""⑥ SIGALRM, the signal behind a task's time limit and its cancel: a late or stray one stops nothing.

A real `orch worker` process is sent SIGALRM while idle and while it runs a task; in-process, a cancel
whose signal goes out just as its attempt ends must not stop the next attempt or reach the handler that
was there before, and a signal when no attempt is armed (or one neither cancelled nor overdue) is
ignored. The races are forced with events, not timing: the cancel's signal is held back until the
attempt has ended, or until its ending waits for that signal (the fixed design makes it wait).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import pytest
import redis

from executors import alarm
from executors.attempt import Attempt, LogBuffer, attempt_scope, cancel_running, task_logger
from orchestrator.cli.wiring import load_project
from orchestrator.context import TaskCancelled, TaskContext, TaskTimeout
from orchestrator.project import Project
from orchestrator.settings import Settings
from orchestrator.workflows.records import RecordKind, TaskRecord

from ..helpers import wait_for
from ..projects import make_project
from .test_worker_fastpath import dispatch, heartbeat, records, worker_process

WORKFLOWS = {
    "tasks": """
        import os
        import time
        from orchestrator import task, workflow

        @task
        def noop(value=None):
            return value

        @task
        def hold(started: str, go: str):
            open(started, "w").close()
            while not os.path.exists(go):
                time.sleep(0.01)
            return "held"

        @workflow
        def call_noop(value=None):
            noop(value)

        @workflow
        def call_hold(started, go):
            hold.with_options(timeout_s=30)(started, go)
    """
}
LIMIT_S = 30.0  # the in-process attempts' time limit: never reached unless a test says so
WAIT_S = 10.0  # the most a test waits for a condition it expects at once


# -- a real worker process ---------------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path: Path) -> Project:
    return load_project(make_project(tmp_path / "project", workflows=WORKFLOWS))


@pytest.fixture
def worker_settings(redis_url: str, project: Project) -> Settings:
    return Settings(redis_url=redis_url, project=project.root, worker_heartbeat_s=0.2,
                    worker_heartbeat_ttl_s=1.0)


def outcome(r: redis.Redis, worker: subprocess.Popen[bytes], run: str) -> TaskRecord:
    """The final record of `run`, once there is one; fails at once if the worker died meanwhile."""
    def final() -> TaskRecord | None:
        assert worker.poll() is None, f"the worker died (exit {worker.returncode})"
        reports = records(r).get(run, [])
        return reports[-1] if reports and reports[-1].kind is not RecordKind.STARTED else None
    record = wait_for(final, WAIT_S, f"run {run} to end")
    assert record is not None
    return record


def alarms(worker: subprocess.Popen[bytes], times: int = 3) -> None:
    for _ in range(times):
        os.kill(worker.pid, signal.SIGALRM)


def test_a_worker_ignores_stray_sigalrms_idle_or_busy_and_its_task_still_succeeds(
        r: redis.Redis, worker_settings: Settings, tmp_path: Path) -> None:
    worker = worker_process(worker_settings, tmp_path)
    try:
        wait_for(lambda: heartbeat(r, worker), 20, "the worker's heartbeat")
        alarms(worker)  # idle, before its first job (SIG_DFL would end the process here)
        dispatch(r, worker_settings, [("noop", ["first"])], prefix="first")
        assert outcome(r, worker, "first0000").result == "first"

        started, go = tmp_path / "started", tmp_path / "go"
        dispatch(r, worker_settings, [("hold", [str(started), str(go)])], prefix="held")
        wait_for(started.exists, WAIT_S, "the task to be running")
        alarms(worker)  # inside the attempt: neither cancelled nor overdue
        go.touch()
        held = outcome(r, worker, "held0000")
        assert (held.kind, held.error_type, held.result) == (RecordKind.SUCCEEDED, None, "held")

        alarms(worker)  # idle again, after a job
        dispatch(r, worker_settings, [("noop", ["later"])], prefix="later")
        assert outcome(r, worker, "later0000").result == "later"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(WAIT_S) == 0
    finally:
        if worker.poll() is None:
            worker.kill()


# -- in-process: a cancel racing the end of its attempt -------------------------------------------------

def make_attempt(run_id: str, timeout_s: float = LIMIT_S, number: int = 1) -> Attempt:
    logs = LogBuffer()
    ctx = TaskContext(run_id=run_id, workflow="wf", task="t", node="n", attempt=number, key=f"{run_id}:n",
                      logger=task_logger("wf", "n", logs))
    return Attempt(ctx=ctx, kind="python", args=[], kwargs={}, timeout_s=timeout_s, logs=logs)


@pytest.fixture
def strays() -> Iterator[list[int]]:
    """The SIGALRMs that reach the handler in place before orch's (RQ's death penalty, pytest-timeout)."""
    caught: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    previous = signal.signal(signal.SIGALRM, record)
    try:
        yield caught
    finally:
        signal.signal(signal.SIGALRM, previous)


MODES: dict[str, Callable[[], AbstractContextManager[None]]] = {
    "swapped per attempt": nullcontext,  # run_task under RQ's SimpleWorker, or in a test
    "installed for the worker's life": alarm.handling_alarms,  # the fast worker
}


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest, strays: list[int]) -> Iterator[None]:
    with MODES[request.param]():
        yield


class HeldCancel:
    """A cancel from another thread whose SIGALRM is held back between its check and its sending.

    `signal.pthread_kill` is replaced so that it announces itself (`reached`) and waits for `go`. `go` is
    set by the test once the attempt is over, or by the main thread itself when, ending the attempt, it
    finds the cancel's lock taken (the fixed design; the test would otherwise wait on itself).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, attempt: Attempt) -> None:
        self.reached, self.go = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=cancel_running, args=(attempt.ctx.run_id, "a test"))
        real = signal.pthread_kill

        def held(thread_id: int, signum: int) -> None:
            self.reached.set()
            assert self.go.wait(WAIT_S), "the signal was never let go"
            real(thread_id, signum)

        monkeypatch.setattr(signal, "pthread_kill", held)
        monkeypatch.setattr(alarm, "_signalling", _Announcing(self.go), raising=False)

    def release(self) -> None:
        """Let the signal go (if still held) and wait until it is sent."""
        self.go.set()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive()


class _Announcing(AbstractContextManager[None]):
    """A lock that sets `event` when the main thread finds it taken, before waiting for it."""

    def __init__(self, event: threading.Event) -> None:
        self._lock, self._event = threading.Lock(), event

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            if threading.current_thread() is threading.main_thread():
                self._event.set()
            self._lock.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._lock.release()


@pytest.mark.parametrize("late", ["between attempts", "in the next attempt"])
def test_a_cancel_sent_as_its_attempt_ends_stops_neither_the_next_attempt_nor_anything_else(
        mode: None, late: str, strays: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = make_attempt("run-a"), make_attempt("run-b")
    cancel = HeldCancel(monkeypatch, first)

    with attempt_scope(first, limit=True):
        cancel.thread.start()
        assert cancel.reached.wait(WAIT_S), "the cancel found the attempt armed"
    if late == "between attempts":
        cancel.release()
    with attempt_scope(second, limit=True):
        cancel.release()
        pause()  # where the second attempt would be stopped if the signal were taken for it

    assert strays == [], "nor did it reach the handler that was there before"
    assert first.cancelled.is_set() and not second.cancelled.is_set()


def beating(run_id: str, started: threading.Event, ended: threading.Event) -> threading.Thread:
    """A heartbeat thread of a worker whose running attempt's run was cancelled: it says so on every beat."""
    def beat() -> None:
        started.wait(WAIT_S)
        while not ended.is_set():
            cancel_running(run_id, "no longer needed")
            ended.wait(0.05)
    thread = threading.Thread(target=beat)
    thread.start()
    return thread


def test_a_cancel_while_the_attempt_runs_stops_it_with_the_reason(mode: None, strays: list[int]) -> None:
    running = make_attempt("run-c")
    started, ended = threading.Event(), threading.Event()
    beats = beating("run-c", started, ended)

    try:
        with pytest.raises(TaskCancelled, match="no longer needed"), attempt_scope(running, limit=True):
            started.set()
            time.sleep(LIMIT_S)
    finally:
        ended.set()
        beats.join(WAIT_S)
    assert running.cancel_reason == ["no longer needed"] and strays == []


def test_a_cancel_whose_signal_went_unseen_is_signalled_again(strays: list[int],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """As when the signal lands just before time.sleep blocks: the sleep would only see it when it ends."""
    running = make_attempt("run-h", timeout_s=2 * LIMIT_S)
    sent: list[int] = []
    real = signal.pthread_kill

    def first_unseen(thread_id: int, signum: int) -> None:
        sent.append(signum)
        if len(sent) > 1:
            real(thread_id, signum)

    monkeypatch.setattr(signal, "pthread_kill", first_unseen)
    started, ended = threading.Event(), threading.Event()
    beats = beating("run-h", started, ended)
    try:
        with pytest.raises(TaskCancelled), attempt_scope(running, limit=True):
            started.set()
            time.sleep(LIMIT_S)  # returns normally if no second signal comes
    finally:
        ended.set()
        beats.join(WAIT_S)
    assert len(sent) >= 2 and strays == []


# -- in-process: signals nobody sent for the attempt ------------------------------------------------------

def test_a_sigalrm_outside_an_attempt_or_for_nothing_in_it_is_ignored(strays: list[int]) -> None:
    with alarm.handling_alarms():
        with attempt_scope(make_attempt("run-d"), limit=True):
            pass
        signal.raise_signal(signal.SIGALRM)  # after the attempt: its timer's, or a late cancel's
        with attempt_scope(make_attempt("run-e"), limit=True):
            signal.raise_signal(signal.SIGALRM)  # during one neither cancelled nor overdue
            pause()
        assert signal.getsignal(signal.SIGALRM) is alarm._on_alarm, "it stays installed between attempts"
    assert strays == [], "put back afterwards, the previous handler saw none of them"


def test_a_stray_sigalrm_in_an_attempt_is_ignored_when_the_handler_is_swapped_in(strays: list[int]) -> None:
    with attempt_scope(make_attempt("run-f"), limit=True):
        signal.raise_signal(signal.SIGALRM)
        pause()

    assert strays == []


@pytest.mark.parametrize("work", [lambda: time.sleep(LIMIT_S), lambda: busy(LIMIT_S)], ids=["sleep", "loop"])
def test_the_time_limit_still_stops_sleeps_and_loops(mode: None, strays: list[int],
                                                     work: Callable[[], Any]) -> None:
    overdue = make_attempt("run-g", timeout_s=0.2)
    with pytest.raises(TaskTimeout, match="time limit of 0.2s"), attempt_scope(overdue, limit=True):
        work()

    assert strays == []


def pause() -> None:
    """A few calls: after each, a pending signal's handler runs."""
    for _ in range(3):
        time.sleep(0)


def busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_cancel_seen_for_an_earlier_attempt_does_not_stop_the_retry_running_now(mode: None,
                                                                                  strays: list[int]) -> None:
    """The heartbeat read (run, node, attempt 1) and saw it cancelled; by the time it acts, attempt 2 (the
    retry) runs: it must go on."""
    retry = make_attempt("run-r", number=2)
    with attempt_scope(retry, limit=True):
        assert not cancel_running("run-r", "stale", "n", 1)
        assert not cancel_running("run-r", "stale", "other-node", 2)
        assert not retry.cancelled.is_set()
        with pytest.raises(TaskCancelled, match="cancelled again"):
            cancel_running("run-r", "cancelled again", "n", 2)
            pause()
        assert retry.cancelled.is_set()
    assert strays == []
