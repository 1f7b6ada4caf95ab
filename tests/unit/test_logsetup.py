"""How orch processes log: text lines keep their format, and `one_write` puts a loop's lines out in one write."""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Iterator

import pytest

from orchestrator.logsetup import TextLines, about, one_write


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def stream() -> Iterator[CountingStream]:
    out = CountingStream()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextLines())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)  # (setLevel, not .level: loggers cache whether a level is enabled)
    yield out
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_a_text_line_has_the_time_level_logger_and_message(stream: CountingStream) -> None:
    logging.getLogger("orchestrator.engine.loop").info("run %s started", "r1", extra=about("r1"))
    logging.getLogger("orchestrator.engine.loop").warning("second")

    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO  orchestrator.engine.loop: run r1 started", lines[0]), lines
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING orchestrator.engine.loop: second", lines[1]), lines


def test_one_write_puts_every_line_out_in_order_once_at_the_end(stream: CountingStream) -> None:
    log = logging.getLogger("orchestrator.engine.loop")
    with one_write():
        for i in range(100):
            log.info("run %d", i)
        thread = threading.Thread(target=lambda: log.info("from another thread"))
        thread.start()
        thread.join()
        assert stream.getvalue() == ""  # nothing yet

    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [f"run {i}" for i in range(100)] + ["from another thread"]
    assert stream.writes == 1
    log.info("after")
    assert stream.getvalue().endswith(": after\n") and stream.writes == 2  # the handler writes as before


def test_two_threads_batching_at_once_leave_the_handler_on_its_stream(stream: CountingStream) -> None:
    """Two engines in one process: the second `one_write` starts inside the first and ends after it. Both
    swapping the stream would leave the handler writing into the first's buffer for good."""
    log = logging.getLogger("orchestrator.engine.loop")
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with one_write():
            first_in.set()
            second_in.wait(10)
            log.info("first")
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with one_write():
            second_in.set()
            first_out.wait(10)
            log.info("second")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    log.info("later")
    assert [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()] == ["first", "second", "later"]
