"""state.pipeline.send: replies in order, parsed as the client parses them, an error reply in its place
without disturbing the ones after it, and a dead connection raised (never retried)."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
import redis

from orchestrator.state import pipeline

from ..helpers import RedisServer
from ..netproxy import RedisProxy


def test_replies_come_back_in_order_parsed_as_the_client_would(r: redis.Redis) -> None:
    replies = pipeline.send(r, [("HSET", "rp:h", "a", "1", "b", 2), ("HGETALL", "rp:h"), ("INCRBY", "rp:n", 3),
                                ("ZADD", "rp:z", 1.5, "m"), ("ZSCORE", "rp:z", "m")])
    via_client = r.pipeline(transaction=False).hgetall("rp:h").zscore("rp:z", "m").execute()
    assert replies == [2, via_client[0], 3, 1, via_client[1]]
    r.delete("rp:h", "rp:n", "rp:z")


def test_a_refused_command_has_its_error_as_reply_and_the_rest_still_run(r: redis.Redis) -> None:
    r.set("rp:s", "text")
    replies = pipeline.send(r, [("INCR", "rp:s"), ("SET", "rp:after", "1"), ("GET", "rp:after")])
    assert isinstance(replies[0], redis.ResponseError) and replies[1:] == [True, b"1"]
    assert r.ping()  # the pooled connection is in step for whoever takes it next
    r.delete("rp:s", "rp:after")


def test_a_connection_lost_midway_is_raised_and_the_next_send_reconnects(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    [own_id] = pipeline.send(client, [("CLIENT", "ID")])
    with pytest.raises(redis.ConnectionError):  # Redis closes it after the kill: the last reply never comes
        pipeline.send(client, [("PING",), ("CLIENT", "KILL", "ID", own_id, "SKIPME", "no"), ("PING",)])
    assert pipeline.send(client, [("PING",)]) == [True]
    client.close()


def test_a_transaction_commits_and_a_watched_change_aborts_it(r: redis.Redis) -> None:
    with pipeline.transaction(r) as pipe:
        pipe.watch("rp:w")
        pipe.multi()
        pipe.set("rp:w", "mine")
        pipe.hset("rp:wh", mapping={"a": 1})
        assert pipe.execute() == [b"OK", 1]  # as Redis sent them: no reply callbacks
    with pipeline.transaction(r) as pipe:
        pipe.watch("rp:w")
        r.set("rp:w", "theirs")  # another client, between the read and the commit
        pipe.multi()
        pipe.set("rp:w", "mine again")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get("rp:w") == b"theirs"
    r.delete("rp:w", "rp:wh")


def test_a_command_refused_inside_exec_is_raised_and_the_connection_stays_in_step(r: redis.Redis) -> None:
    r.set("rp:str", "x")
    with pipeline.transaction(r) as pipe:
        pipe.hset("rp:str", "f", "v")  # WRONGTYPE, at EXEC
        pipe.set("rp:ok", "1")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            pipe.execute()
    assert r.get("rp:ok") == b"1"  # Redis ran the rest of the transaction, as it always does
    with pipeline.transaction(r) as pipe:
        pipe.execute_command("NOSUCHCOMMAND")  # refused when queued: EXECABORT, nothing runs
        pipe.set("rp:never", "1")
        with pytest.raises(redis.ResponseError):
            pipe.execute()
    assert r.get("rp:never") is None and r.ping()
    r.delete("rp:str", "rp:ok")


def test_an_argument_redis_cannot_take_is_a_data_error_before_anything_is_sent(r: redis.Redis) -> None:
    with pytest.raises(redis.DataError):
        pipeline.send(r, [("SET", "rp:none", None)])
    assert r.exists("rp:none") == 0 and r.ping()


@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_replies_and_refusals_read_alike_with_either_reply_parser(redis_url: str, parser: str) -> None:
    # raw_replies reads hiredis's reader directly; redis-py's pure-Python parser goes reply by reply
    from redis._parsers import _HiredisParser, _RESP3Parser

    client = redis.Redis.from_url(redis_url, parser_class=_HiredisParser if parser == "hiredis" else _RESP3Parser)
    client.set("rp:p:s", "text")
    replies = pipeline.send(client, [("INCR", "rp:p:s"), ("HSET", "rp:p:h", "a", 1), ("HGETALL", "rp:p:h"),
                                     ("EVALSHA", "0" * 40, 0)])
    assert isinstance(replies[0], redis.ResponseError) and replies[1:3] == [1, {b"a": b"1"}]
    assert isinstance(replies[3], redis.exceptions.NoScriptError)  # the client's own error classes
    with pipeline.transaction(client) as pipe:
        pipe.watch("rp:p:h")
        pipe.multi()
        pipe.hset("rp:p:h", "b", 2)
        pipe.execute_command("INCR", "rp:p:s")  # refused when run, inside EXEC
        out = pipe.execute(raise_on_error=False)
    assert out[0] == 1 and isinstance(out[1], redis.ResponseError)
    assert pipeline.send(client, [("PING",)]) == [True]  # in step
    client.delete("rp:p:s", "rp:p:h")
    client.close()


@pytest.mark.parametrize("how", ["send", "transaction"])
def test_a_connection_reset_midway_is_a_redis_connection_error(redis_url: str, how: str) -> None:
    # callers (the engine's loop, the worker's) ride out redis.ConnectionError; a bare OSError would end them
    target = urlparse(redis_url)
    proxy = RedisProxy((str(target.hostname), int(target.port or 6379)), reset_on=b"RESET-ME")
    client = redis.Redis.from_url(f"redis://127.0.0.1:{proxy.port}/0")
    try:
        assert pipeline.send(client, [("PING",)]) == [True]
        with pytest.raises(redis.ConnectionError):
            if how == "send":
                pipeline.send(client, [("ECHO", "RESET-ME")])
            else:
                with pipeline.transaction(client) as pipe:
                    pipe.multi()
                    pipe.execute_command("ECHO", "RESET-ME")
                    pipe.execute()
    finally:
        client.close()
        proxy.close()


def test_a_reply_larger_than_one_read_comes_back_whole(r: redis.Redis) -> None:
    big = b"x" * 300_000  # several socket reads for the reader to assemble
    replies = pipeline.send(r, [("SET", "rp:big", big), ("GET", "rp:big"), ("STRLEN", "rp:big")])
    assert replies == [True, big, 300_000]
    r.delete("rp:big")


def test_a_readonly_reply_on_a_sentinel_master_connection_drops_it_as_redis_py_does(redis_server: RedisServer) -> None:
    # a demoted primary answers READONLY; redis-py's Sentinel connections (those with a master pool) then
    # disconnect, so the next connect asks the Sentinels again, and raise ConnectionError, which the engine
    # and the workers ride out
    replica = RedisServer("--replicaof", "127.0.0.1", str(redis_server.port))
    client = redis.Redis.from_url(replica.url, max_connections=1)
    try:
        [refused] = pipeline.send(client, [("SET", "rp:ro", "1")])  # a plain connection: the refusal is the reply
        assert isinstance(refused, redis.exceptions.ReadOnlyError)
        conn = client.connection_pool.get_connection()
        conn.connection_pool = SimpleNamespace(is_master=True)  # what a SentinelManagedConnection holds
        client.connection_pool.release(conn)
        with pytest.raises(redis.ConnectionError):
            pipeline.send(client, [("SET", "rp:ro", "1")])
        assert conn._sock is None  # dropped: the next command connects again
    finally:
        client.close()
        replica.stop()
