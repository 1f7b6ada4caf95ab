"""② Reading back a window of recorded events in pages (for `orch rules backtest`), and telling whether the
stream was trimmed past the window's start; on a real Redis."""

from __future__ import annotations

import redis

from orchestrator.events.history import read_window, trimmed_after
from orchestrator.jsonutil import dumps


def fill(r: redis.Redis, count: int) -> list[str]:
    pipe = r.pipeline(transaction=False)
    for n in range(count):
        pipe.xadd("s", {"e": dumps({"n": n}) if n % 100 else b"{broken"})
    return [entry.decode() for entry in pipe.execute()]


def test_a_window_is_read_in_pages_each_entry_once_in_order(r: redis.Redis) -> None:
    entries = fill(r, 1203)
    pages: list[tuple[int, str]] = []

    read = list(read_window(r, "s", entries[0], "+", page=100, progress=lambda n, last: pages.append((n, last))))

    assert [entry for entry, _ in read] == entries
    assert [body for _, body in read[:2]] == [None, {"n": 1}], "an entry that is not JSON reads as None"
    assert pages == [(100 * k, entries[100 * k - 1]) for k in range(1, 13)]
    assert [e for e, _ in read_window(r, "s", entries[10], entries[20], page=3)] == entries[10:21]
    assert list(read_window(r, "nothing", "0-0")) == []


def test_a_stream_trimmed_past_the_start_says_where_it_starts_now(r: redis.Redis) -> None:
    entries = fill(r, 10)
    assert trimmed_after(r, "s", entries[0]) is None, "nothing trimmed"
    assert trimmed_after(r, "nothing", "0-0") is None

    r.xtrim("s", minid=entries[4], approximate=False)

    assert trimmed_after(r, "s", entries[0]) == entries[4]
    assert trimmed_after(r, "s", entries[4]) is None, "the window starts where the stream does"
    assert trimmed_after(r, "s", entries[6]) is None
    r.xtrim("s", maxlen=0, approximate=False)
    assert trimmed_after(r, "s", entries[0]) == entries[9], "trimmed empty: everything up to the last is gone"
