"""A Redis reached over a unix socket (`ORCH_REDIS_URL=unix:///path?db=0`), as the README lists it."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import AsyncClient, Client, Settings
from orchestrator.connection import connect
from tests.helpers import RedisServer


@pytest.fixture
def unix_server() -> Iterator[tuple[RedisServer, str]]:
    folder = Path(tempfile.mkdtemp(prefix="orch-test-sock-"))
    server = RedisServer("--unixsocket", str(folder / "redis.sock"), "--unixsocketperm", "700")
    try:
        yield server, f"unix://{folder / 'redis.sock'}?db=0"
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_every_client_connects_over_a_unix_socket(unix_server: tuple[RedisServer, str]) -> None:
    # redis-py's unix-socket connections refuse the TCP keepalive option orch sets on every client
    server, url = unix_server
    settings = Settings(redis_url=url, key_prefix="sock")
    assert connect(settings).ping()
    with Client(settings=settings) as client:
        client.emit("x.sync", {"n": 1}, source="/s")

    async def emit_async() -> None:
        async with AsyncClient(settings=settings) as client:
            await client.emit("x.async", {"n": 2}, source="/s")

    asyncio.run(emit_async())
    admin = server.client()
    assert admin.xlen("sock:events") == 2
    admin.close()
