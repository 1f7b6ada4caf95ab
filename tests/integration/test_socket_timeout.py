"""A connection left hanging (a primary gone without a reset, a dropped NAT entry, a partition) must not
stall a long-running client: every client orch keeps open has a socket timeout (connection.client_options),
so a command that gets no answer fails with a TimeoutError (a RedisError: the loops ride it out) and the
next one goes out on a new connection. It is not retried blindly, since Redis may have run it. (redis-py
8 sets a 5 s timeout of its own, 5 to 7 none; orch sets one for every supported version, long enough for
the engine's blocking read however long ORCH_ENGINE_BLOCK_S makes it.)

A TCP proxy between the client and a real redis-server plays the network (tests/netproxy.py): `hang()`
makes every connection open at that moment swallow what Redis answers, as a half-open connection does;
connections opened later work. Without a socket timeout the command below would wait forever, which the threads'
generous join guards against (it is a hang guard, not a timing assertion)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
import redis

from orchestrator.connection import client_options, connect
from orchestrator.events.client import AsyncClient
from orchestrator.events.stream import StreamConsumer
from orchestrator.settings import Settings

from ..netproxy import RedisProxy

HANG_GUARD_S = 120.0  # far beyond the timeout below: only a client without one gets there


@pytest.fixture
def proxy(redis_url: str) -> Iterator[RedisProxy]:
    parts = urlsplit(redis_url)
    hanging = RedisProxy((parts.hostname or "127.0.0.1", parts.port or 6379))
    yield hanging
    hanging.close()


def _settings(proxy: RedisProxy) -> Settings:
    return Settings(redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_socket_timeout_s=0.5, engine_block_s=0.1)


def test_every_long_lived_client_gets_a_socket_timeout_above_the_longest_blocking_read() -> None:
    options = client_options(Settings(redis_socket_timeout_s=15, engine_block_s=5))
    assert options["socket_timeout"] == 20 and options["socket_connect_timeout"] == 15
    assert client_options(Settings(redis_socket_timeout_s=15))["socket_timeout"] == 17  # `orch events tail`: 2 s


def test_an_engine_read_may_block_longer_than_redis_pys_own_default_timeout(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, engine_block_s=5.5)
    consumer = StreamConsumer(connect(settings), ["timeout:stream"], "g", "c", batch_size=10,
                              block_s=settings.engine_block_s)
    consumer.ensure_groups()
    assert consumer.read() == []  # waited its 5.5 s; redis-py 8's default 5 s timeout would have cut it


def _in_thread(call: Callable[[], object]) -> list[object]:
    """What `call` returned or raised, from a thread joined with the hang guard."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except redis.RedisError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_GUARD_S)
    return outcome


def test_a_command_on_a_hanging_connection_times_out_and_the_next_uses_a_new_one(proxy: RedisProxy,
                                                                                r: redis.Redis) -> None:
    r.set("timeout:k", "v")
    client = connect(_settings(proxy))
    assert client.get("timeout:k") == b"v"
    proxy.hang()
    [outcome] = _in_thread(lambda: client.get("timeout:k"))
    assert isinstance(outcome, redis.TimeoutError), outcome
    assert _in_thread(lambda: client.get("timeout:k")) == [b"v"]
    assert proxy.accepted == 2
    client.close()


def test_the_asyncio_client_does_the_same(proxy: RedisProxy) -> None:
    async def emit_hang_emit() -> list[object]:
        async with AsyncClient(settings=_settings(proxy)) as client:
            outcomes: list[object] = [await client.emit("t.x", {"n": 1})]
            proxy.hang()
            for n in (2, 3):
                try:
                    outcomes.append(await asyncio.wait_for(client.emit("t.x", {"n": n}), HANG_GUARD_S))
                except redis.RedisError as exc:
                    outcomes.append(exc)
            return outcomes

    first, hung, third = asyncio.run(emit_hang_emit())
    assert isinstance(first, str) and isinstance(hung, redis.TimeoutError) and isinstance(third, str)
    assert proxy.accepted == 2
