"""① File watches on real directories and a real Redis: what a change announces, what the globs keep out,
what a debounce window coalesces, what happens while nobody watches, and several watchers at once."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator.embedded_redis import find_redis_binary
from orchestrator.events.recent import recent_events
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from triggers.files.changes import FileChange, event_id
from triggers.files.config import WatchConfig
from triggers.files.watcher import FileWatcher

from ..helpers import free_port, wait_for

KEYS = Keys()


def make_watch(folder: Path, **fields: Any) -> WatchConfig:
    folder.mkdir(parents=True, exist_ok=True)
    return WatchConfig.model_validate({"name": "inbox", "path": str(folder), "debounce_ms": 100, **fields},
                                      context={"project_root": folder.parent})


@contextmanager
def watching(client: redis.Redis, settings: Settings, *watches: WatchConfig, ready: bool = True,
             **options: Any) -> Iterator[FileWatcher]:
    """A FileWatcher running in a thread; on exit it must stop within a second of being told to."""
    watcher = FileWatcher(client, settings, watches, tick_ms=50, **options)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        if ready:
            wait_for(watcher.ready, 10, "the watcher to catch up with its directory")
        yield watcher
    finally:
        stop.set()
        started = time.monotonic()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - started < 1.0, "the watcher stops promptly"


def file_events(client: redis.Redis) -> list[dict[str, Any]]:
    """Every file event in the stream, oldest first."""
    return recent_events(client, KEYS, limit=1000, type_glob="file.*")[::-1]


def summary(client: redis.Redis) -> list[tuple[str, str]]:
    return [(e["type"], e["data"]["path"]) for e in file_events(client)]


def wait_for_events(client: redis.Redis, count: int) -> list[tuple[str, str]]:
    wait_for(lambda: len(file_events(client)) >= count, 10, f"{count} file event(s)")
    time.sleep(0.3)  # longer than a debounce window: anything extra would show up now
    return summary(client)


def put(path: Path, text: str) -> None:
    """Write `path` atomically: a hidden temporary file (which the watches exclude), then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_text(text)
    os.replace(temporary, path)


def test_adding_modifying_and_deleting_files_announce_each_change(r: redis.Redis, settings: Settings,
                                                                   tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    with watching(r, settings, make_watch(inbox)):
        (inbox / "a.csv").write_text("x,y\n1,2\n")
        wait_for_events(r, 1)
        with (inbox / "a.csv").open("a") as handle:
            handle.write("3,4\n")
        wait_for_events(r, 2)
        (inbox / "a.csv").unlink()
        (inbox / "sub").mkdir()
        (inbox / "sub" / "b.csv").write_text("z\n")
        events = wait_for_events(r, 4)

    assert events == [("file.added", "a.csv"), ("file.modified", "a.csv"), ("file.deleted", "a.csv"),
                      ("file.added", "sub/b.csv")]
    added, modified, deleted, nested = file_events(r)
    assert added["source"] == "/watches/inbox" and added["subject"] == "a.csv"
    assert added["data"]["size"] == 8 and modified["data"]["size"] == 12
    assert deleted["data"] == {"watch": "inbox", "path": "a.csv", "size": None, "mtime": None}
    stat = (inbox / "sub" / "b.csv").stat()
    mtime = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=stat.st_mtime_ns // 1000)
    assert nested["data"] == {"watch": "inbox", "path": "sub/b.csv", "size": 2,
                              "mtime": mtime.isoformat().replace("+00:00", "Z")}
    sig = f"{stat.st_size}:{stat.st_mtime_ns}"
    assert nested["id"] == event_id("inbox", FileChange("added", "sub/b.csv", None, sig))
    assert r.hgetall(KEYS.watch_files("inbox")) == {b"sub/b.csv": sig.encode()}


def test_include_and_exclude_keep_files_out(r: redis.Redis, settings: Settings, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    watch = make_watch(inbox, include=["*.csv", "*.json"], exclude=["**/draft-*", "tmp/**"])
    with watching(r, settings, watch):
        for name in ("sub/a.csv", "b.txt", "draft-c.csv", "tmp/d.csv", "e.json", "sub/draft-f.json"):
            (inbox / name).parent.mkdir(parents=True, exist_ok=True)
            (inbox / name).write_text("1\n")
        (inbox / "b.txt").unlink()
        (inbox / "z.csv").write_text("last\n")
        events = wait_for_events(r, 3)

    assert sorted(events) == [("file.added", "e.json"), ("file.added", "sub/a.csv"), ("file.added", "z.csv")]


def test_a_burst_of_writes_within_the_debounce_window_is_one_event(r: redis.Redis, settings: Settings,
                                                                   tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    with watching(r, settings, make_watch(inbox, debounce_ms=500)):
        with (inbox / "big.csv").open("w") as handle:
            for i in range(10):  # 200 ms of writes, each within 50 ms of the last
                handle.write(f"{i},{i * i}\n")
                handle.flush()
                time.sleep(0.02)
        events = wait_for_events(r, 1)
        time.sleep(0.3)

    assert events == [("file.added", "big.csv")] and summary(r) == events
    assert file_events(r)[0]["data"]["size"] == (inbox / "big.csv").stat().st_size


def test_changes_made_while_nobody_watched_are_announced_once_on_the_next_start(
        r: redis.Redis, settings: Settings, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    watch = make_watch(inbox)
    with watching(r, settings, watch):
        for name in ("a.csv", "b.csv", "c.csv"):
            (inbox / name).write_text(f"{name}\n")
        wait_for_events(r, 3)

    (inbox / "d.csv").write_text("new while down\n")
    with (inbox / "a.csv").open("a") as handle:
        handle.write("changed while down\n")
    (inbox / "b.csv").unlink()
    with watching(r, settings, watch):
        events = wait_for_events(r, 6)
    with watching(r, settings, watch):  # a start with nothing changed announces nothing
        time.sleep(0.3)

    assert sorted(events[:3]) == [("file.added", "a.csv"), ("file.added", "b.csv"), ("file.added", "c.csv")]
    assert sorted(events[3:]) == [("file.added", "d.csv"), ("file.deleted", "b.csv"), ("file.modified", "a.csv")]
    assert summary(r) == events
    assert len({e["id"] for e in file_events(r)}) == 6


def test_a_crash_between_publishing_and_recording_re_announces_and_the_stream_drops_the_repeat(
        r: redis.Redis, settings: Settings, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    watch = make_watch(inbox)
    with watching(r, settings, watch):
        for name in ("a.csv", "b.csv"):
            (inbox / name).write_text(f"{name}\n")
        wait_for_events(r, 2)
    r.hdel(KEYS.watch_files("inbox"), "a.csv")  # as if the watcher died after XADD, before HSET

    with watching(r, settings, watch):
        events = wait_for_events(r, 2)

    assert sorted(events) == [("file.added", "a.csv"), ("file.added", "b.csv")]
    assert r.hget(KEYS.metric("orch_events_received_total"), "file\x1fduplicate") == b"1"
    assert r.hexists(KEYS.watch_files("inbox"), "a.csv")


def test_a_directory_moved_in_or_out_announces_its_files(r: redis.Redis, settings: Settings,
                                                         tmp_path: Path) -> None:
    inbox, staging = tmp_path / "inbox", tmp_path / "staging"
    for name in ("x/1.csv", "x/deep/2.csv"):
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text("1\n")
    with watching(r, settings, make_watch(inbox)):
        os.rename(staging / "x", inbox / "x")
        wait_for_events(r, 2)
        os.rename(inbox / "x", tmp_path / "gone")
        events = wait_for_events(r, 4)

    assert sorted(events[:2]) == [("file.added", "x/1.csv"), ("file.added", "x/deep/2.csv")]
    assert sorted(events[2:]) == [("file.deleted", "x/1.csv"), ("file.deleted", "x/deep/2.csv")]
    assert r.hlen(KEYS.watch_files("inbox")) == 0


def test_a_watched_directory_that_vanishes_is_waited_for_not_announced_as_empty(
        r: redis.Redis, settings: Settings, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    with watching(r, settings, make_watch(inbox), max_backoff_s=0.2):
        (inbox / "a.csv").write_text("1\n")
        wait_for_events(r, 1)
        os.rename(inbox, tmp_path / "unmounted")
        time.sleep(0.5)
        os.rename(tmp_path / "unmounted", inbox)
        (inbox / "b.csv").write_text("2\n")
        events = wait_for_events(r, 2)

    assert events == [("file.added", "a.csv"), ("file.added", "b.csv")]


def test_two_watchers_on_one_directory_announce_each_change_once(redis_url: str, settings: Settings,
                                                                 r: redis.Redis, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    watch = make_watch(inbox, exclude=["**/.*"])
    (inbox / "before.csv").write_text("there before both\n")
    other = redis.Redis.from_url(redis_url)
    try:
        with watching(r, settings, watch), watching(other, settings, watch):
            for i in range(10):
                put(inbox / f"f{i}.csv", f"{i}\n")
            wait_for_events(r, 11)
            put(inbox / "f0.csv", "changed\n")
            (inbox / "f1.csv").unlink()
            events = wait_for_events(r, 13)
    finally:
        other.close()

    assert len(events) == 13 and len(set(events)) == 13
    assert ("file.added", "before.csv") in events
    assert events[-2:] in ([("file.modified", "f0.csv"), ("file.deleted", "f1.csv")],
                           [("file.deleted", "f1.csv"), ("file.modified", "f0.csv")])


def test_the_watcher_rides_out_a_redis_that_is_not_there_yet(settings: Settings, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    port = free_port()
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    server: subprocess.Popen[bytes] | None = None
    try:
        with watching(client, settings, make_watch(inbox), ready=False, max_backoff_s=0.3) as watcher:
            (inbox / "early.csv").write_text("written while Redis was down\n")
            time.sleep(0.5)
            assert not watcher.ready()
            binary, _ = find_redis_binary()
            server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(tmp_path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            wait_for(watcher.ready, 10, "the watcher to reach Redis")
            events = wait_for_events(client, 1)
    finally:
        client.close()
        if server is not None:
            server.kill()
            server.wait()

    assert events == [("file.added", "early.csv")]


def test_a_symlinked_directory_inside_the_watch_leaks_nothing_from_outside(r: redis.Redis, settings: Settings,
                                                                            tmp_path: Path) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    outside.mkdir()
    (outside / "there-before.txt").write_text("outside the watch\n")
    inbox.mkdir()
    (inbox / "link").symlink_to(Path("..") / "outside")  # watched/link -> ../outside: watchfiles follows it
    with watching(r, settings, make_watch(inbox)):
        (outside / "secret.txt").write_text("must not be announced\n")
        (outside / "deep").mkdir()
        (outside / "deep" / "more.txt").write_text("nor this\n")
        time.sleep(0.4)
        (outside / "secret.txt").unlink()
        time.sleep(0.4)
        (inbox / "marker.txt").write_text("inside\n")  # a change that is announced, after all the above
        events = wait_for_events(r, 1)
        time.sleep(0.3)

    assert events == [("file.added", "marker.txt")] and summary(r) == events
    assert r.hkeys(KEYS.watch_files("inbox")) == [b"marker.txt"]


def test_files_under_a_directory_replaced_by_a_symlink_are_deleted_not_followed(
        r: redis.Redis, settings: Settings, tmp_path: Path) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    outside.mkdir()
    (outside / "a.csv").write_text("outside\n")
    with watching(r, settings, make_watch(inbox)):
        (inbox / "sub").mkdir()
        (inbox / "sub" / "a.csv").write_text("inside\n")
        wait_for_events(r, 1)
        (inbox / "sub" / "a.csv").unlink()
        (inbox / "sub").rmdir()
        (inbox / "sub").symlink_to(outside)
        events = wait_for_events(r, 2)

    assert events == [("file.added", "sub/a.csv"), ("file.deleted", "sub/a.csv")]


def test_a_watched_directory_swapped_for_a_symlink_is_not_followed(r: redis.Redis, settings: Settings,
                                                                   tmp_path: Path) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("outside\n")
    with watching(r, settings, make_watch(inbox), max_backoff_s=0.2, resync_s=0.2):
        (inbox / "a.csv").write_text("1\n")
        wait_for_events(r, 1)
        os.rename(inbox, tmp_path / "moved-away")
        inbox.symlink_to(outside)  # the path validated now leads outside: rescans must not follow it
        time.sleep(1.0)
        (outside / "later.csv").write_text("outside too\n")
        time.sleep(0.5)

    assert summary(r) == [("file.added", "a.csv")]


@pytest.mark.parametrize("busy", ["busy/*.log", "*.tmp"])
def test_a_file_is_announced_one_debounce_window_after_its_last_change(
        r: redis.Redis, settings: Settings, tmp_path: Path, busy: str) -> None:
    # New files arriving without pause used to make watchfiles group notifications for a whole debounce
    # window before the watcher started its own (a file written once waited two windows), and when all
    # of them were excluded (*.tmp), watchfiles yielded nothing at all, so nothing was announced.
    inbox = tmp_path / "inbox"
    (inbox / "busy").mkdir(parents=True)
    stop = threading.Event()

    def keep_adding() -> None:
        for i in range(100_000):
            (inbox / busy.replace("*", str(i))).write_text("x")
            if stop.wait(0.02):
                return

    with watching(r, settings, make_watch(inbox, debounce_ms=1000, exclude=["*.tmp"])):
        time.sleep(0.3)  # quiet: the write below starts a new group of notifications
        writer = threading.Thread(target=keep_adding, daemon=True)
        started = time.time()
        (inbox / "once.csv").write_text("written once\n")
        writer.start()
        try:
            wait_for(lambda: ("file.added", "once.csv") in summary(r), 10, "once.csv to be announced")
            took_s = time.time() - started
        finally:
            stop.set()
            writer.join(2)

    assert 0.9 <= took_s < 1.6, took_s
