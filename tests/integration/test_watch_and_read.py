"""lua.watch_and_read: WATCH and a read script in one round trip, as `pipe.watch` + a call would do in two.
The watch holds (a change by another client fails the transaction), NOSCRIPT falls back to the text, and a
script's error leaves the connection in step for what follows."""

from __future__ import annotations

import pytest
import redis

from orchestrator.state import lua


def test_it_reads_under_a_watch_that_a_concurrent_write_breaks(r: redis.Redis) -> None:
    r.hset("wr:run:1", mapping={"meta": "{}", "v": "3"})
    with r.pipeline(transaction=True) as pipe:
        replies = lua.watch_and_read(pipe, ["wr:run:1"], "read_runs", ["wr:run:1"], [1, ""])
        assert pipe.watching and len(replies) == 1
        r.hset("wr:run:1", "v", "4")  # another engine commits meanwhile
        pipe.multi()
        pipe.set("wr:written", "1")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get("wr:written") is None
    r.delete("wr:run:1")


def test_it_loads_a_flushed_script_and_still_commits(r: redis.Redis) -> None:
    r.script_flush()
    with r.pipeline(transaction=True) as pipe:
        lua.watch_and_read(pipe, ["wr:run:2"], "read_runs", ["wr:run:2"], [1, ""])
        pipe.multi()
        pipe.set("wr:written2", "1")
        assert pipe.execute() == [True]
    assert r.get("wr:written2") == b"1"
    r.delete("wr:written2")


def test_an_error_reply_is_raised_and_the_connection_stays_in_step(r: redis.Redis) -> None:
    r.set("wr:string", "x")
    with r.pipeline(transaction=True) as pipe:
        with pytest.raises(redis.ResponseError):  # read_runs HGETALLs its keys: a string is the wrong type
            lua.watch_and_read(pipe, ["wr:string"], "read_runs", ["wr:string"], [1, ""])
        assert pipe.execute_command("PING") is True  # the next reply is PING's, not a leftover
    r.delete("wr:string")


def test_a_connection_lost_after_an_earlier_watch_asks_for_a_retry(r: redis.Redis) -> None:
    with r.pipeline(transaction=True) as pipe:
        pipe.watch("wr:first")  # the runs, watched before the guards or slots are read
        own_id = pipe.execute_command("CLIENT", "ID")
        r.client_kill_filter(_id=own_id)
        with pytest.raises(redis.WatchError):  # that watch is gone: the commit must start again
            lua.watch_and_read(pipe, ["wr:second"], "read_runs", ["wr:second"], [1, ""])
