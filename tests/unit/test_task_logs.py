"""Task logs without Redis: the worker's bounded buffer, the truncation marker, which attempts a request
means, and JSON process logs naming run, task and attempt."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from executors.logbuffer import FLUSH_LINES, MAX_LINE_CHARS, Batch, LogBuffer
from orchestrator import task, workflow
from orchestrator.context import TaskContext, use
from orchestrator.logsetup import AttemptFields, JsonLines, about
from orchestrator.state.logs import AttemptLog, human_bytes
from orchestrator.workflows.lifecycle import new_run
from orchestrator.workflows.logs import LogsNotFound, select_attempts
from orchestrator.workflows.runs import EventRef, Run, TaskRun, TaskState, item_name

# -- the worker's buffer ---------------------------------------------------------------------------


def test_the_buffer_keeps_the_newest_lines_and_counts_what_it_dropped() -> None:
    buffer = LogBuffer(max_lines=3, max_bytes=10_000)
    for i in range(5):
        buffer.add(f"line {i}")

    batch = buffer.take()

    assert batch.lines == ["line 2", "line 3", "line 4"]
    assert (batch.dropped, batch.dropped_bytes) == (2, len("line 0") + len("line 1"))
    assert not buffer.take(), "taking empties the buffer, counts included"


def test_the_byte_cap_holds_too_and_a_long_line_is_cut_saying_by_how_much() -> None:
    buffer = LogBuffer(max_lines=100, max_bytes=20)
    buffer.add("aaaaaaaaa\nbbbbbbbbb\nccccccccc")  # 10 bytes each with the newline
    assert buffer.take().lines == ["bbbbbbbbb", "ccccccccc"]

    wide = LogBuffer()
    wide.add("x" * (MAX_LINE_CHARS + 10))
    (line,) = wide.take().lines
    assert line == "x" * MAX_LINE_CHARS + "… (10 more characters)"


def test_a_batch_put_back_comes_before_newer_lines_within_the_caps() -> None:
    buffer = LogBuffer(max_lines=4, max_bytes=10_000)
    buffer.add("one\ntwo")
    batch = buffer.take()
    buffer.add("three\nfour\nfive")

    buffer.put_back(batch)

    again = buffer.take()
    assert again.lines == ["two", "three", "four", "five"]
    assert again.dropped == 1
    assert buffer.lines() == []


def test_a_full_buffer_wakes_the_shipper() -> None:
    woken: list[bool] = []
    buffer = LogBuffer(on_full=lambda: woken.append(True))
    buffer.add("\n".join(["x"] * (FLUSH_LINES - 1)))
    assert woken == []
    buffer.add("one more")
    assert woken == [True]


def test_an_empty_batch_is_false_and_one_with_only_drops_is_not() -> None:
    assert not Batch()
    assert Batch(dropped=3)


# -- the marker ------------------------------------------------------------------------------------


def test_the_marker_says_how_much_was_dropped_and_what_the_log_keeps() -> None:
    log = AttemptLog("charge", 2, ["last"], first=1500, dropped=1500, dropped_bytes=3 * 1024 * 1024 + 1,
                     exists=True, max_lines=2000, max_bytes=256 * 1024)

    assert log.truncated == ("[… 1,500 earlier line(s) dropped (3.0 MiB in all): a task attempt's log keeps its "
                             "newest 2,000 lines and 256.0 KiB]")
    assert log.text() == [log.truncated, "last"]
    assert log.next == 1501
    assert log.to_dict()["truncated"] == log.truncated
    assert AttemptLog("charge", 1, ["a"], exists=True).text() == ["a"]


@pytest.mark.parametrize(("size", "text"), [(0, "0 bytes"), (1023, "1,023 bytes"), (1536, "1.5 KiB"),
                                            (5 * 1024 * 1024, "5.0 MiB")])
def test_sizes_are_shown_for_people(size: int, text: str) -> None:
    assert human_bytes(size) == text


# -- which attempts a request means ----------------------------------------------------------------


@task
def fetch(day: str) -> list[int]:
    return [1, 2]


@task
def charge(item: int) -> int:
    return item


@task
def report(charges: list[int]) -> str:
    return "ok"


@workflow
def daily(day: str) -> None:
    report(charge.map(fetch(day)))


def _run() -> Run:
    """fetch on its 2nd attempt, charge mapped over two items (the second retried once), report not started."""
    run = new_run("run1", daily.spec, "r", EventRef("e", "/s", "t"), {"day": "d"}, datetime(2024, 1, 1, tzinfo=UTC)).run
    run.tasks["fetch"].attempt = 2
    parent = run.tasks["charge"]
    parent.items, parent.state = 2, TaskState.RUNNING
    for index, attempts in enumerate((1, 2)):
        name = item_name("charge", index)
        run.tasks[name] = TaskRun(node=name, task="charge", queue="default", attempt=attempts, parent="charge",
                                  index=index, state=TaskState.RUNNING)
    return run


def test_by_default_every_task_that_ran_shows_its_latest_attempt_in_run_order() -> None:
    assert select_attempts(_run()) == [("fetch", 2), ("charge[0]", 1), ("charge[1]", 2)]


def test_a_task_or_an_attempt_narrows_the_choice_and_a_mapped_task_means_its_items() -> None:
    run = _run()
    assert select_attempts(run, "fetch") == [("fetch", 2)]
    assert select_attempts(run, "fetch", 1) == [("fetch", 1)]
    assert select_attempts(run, "charge") == [("charge[0]", 1), ("charge[1]", 2)]
    assert select_attempts(run, "charge", 2) == [("charge[1]", 2)]
    assert select_attempts(run, "charge[1]", 1) == [("charge[1]", 1)]
    assert select_attempts(run, attempt=2) == [("fetch", 2), ("charge[1]", 2)]
    assert select_attempts(run, "report") == []


def test_an_unknown_task_or_an_attempt_that_never_was_is_refused_saying_what_there_is() -> None:
    with pytest.raises(LogsNotFound, match=r"no task 'fetsh' \(tasks: fetch, charge, ") as unknown:
        select_attempts(_run(), "fetsh")
    with pytest.raises(LogsNotFound, match="has had 2 attempt\\(s\\) so far, not 3") as beyond:
        select_attempts(_run(), "fetch", 3)
    assert unknown.value.status == beyond.value.status == 422


# -- JSON process logs -----------------------------------------------------------------------------


def _format(formatter: logging.Formatter, message: str, *, exc: bool = False, **extra: Any) -> dict[str, Any]:
    """`message` logged through a handler like setup_logging's, as the JSON object it printed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(AttemptFields())
    logger = logging.Logger("tests.json")
    logger.addHandler(handler)
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception(message, extra=extra)
    else:
        logger.warning(message, extra=extra)
    (line,) = stream.getvalue().splitlines()
    found: dict[str, Any] = json.loads(line)
    return found


def test_a_json_line_has_time_level_logger_and_message_and_nothing_libraries_attach() -> None:
    line = _format(JsonLines(), "hello %s", color_message="\x1b[31mhello\x1b[0m", orch_captured=True)

    assert set(line) == {"time", "level", "logger", "message"}
    assert (line["level"], line["logger"], line["message"]) == ("WARNING", "tests.json", "hello %s")
    assert datetime.fromisoformat(line["time"]).utcoffset() is not None


def test_a_json_line_names_the_attempt_running_in_its_context() -> None:
    with use(TaskContext(run_id="run-7", node="charge[3]", attempt=2)):
        line = _format(JsonLines(), "charging")

    assert (line["run"], line["task"], line["attempt"]) == ("run-7", "charge[3]", 2)


def test_code_outside_an_attempt_names_the_run_it_logs_about_and_tracebacks_stay_whole() -> None:
    assert _format(JsonLines(), "run started", **about("run-8")) | {"time": None} == {
        "time": None, "level": "WARNING", "logger": "tests.json", "message": "run started", "run": "run-8"}
    failed = _format(JsonLines(), "cannot apply", exc=True, **about("run-9", "fetch", 3))
    assert (failed["run"], failed["task"], failed["attempt"]) == ("run-9", "fetch", 3)
    assert failed["exc_info"].startswith("Traceback") and "ValueError: boom" in failed["exc_info"]


def test_text_lines_stay_as_they_were() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(AttemptFields())
    logger = logging.Logger("tests.text")
    logger.addHandler(handler)
    with use(TaskContext(run_id="run-7", node="charge", attempt=1)):
        logger.warning("plain")
    assert stream.getvalue() == "WARNING tests.text: plain\n"
