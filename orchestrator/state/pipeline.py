"""Many commands in one round trip, without redis-py's per-command bookkeeping.

`client.pipeline(transaction=False)` costs about 10 us of Python per command (queueing, packing each
argument, the reply loop) beside the 1-2 us hiredis needs to pack it; the fast worker sends ten commands
per task, so that was a quarter of its CPU. `send` packs each command with hiredis in one call, writes
them at once and reads the replies in order, each through the client's own reply parsing (RESP2 or 3).
It never retries: a connection error is raised and the caller decides what to send again, as the
worker's Ledger does (its commands are idempotent but for counters that are best effort).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.exceptions import ResponseError

__all__ = ["send"]


def send(client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """The replies to `commands`, in order; a command Redis refused has its ResponseError as its reply
    (as `execute(raise_on_error=False)` gives). Arguments: str, bytes, int or float."""
    if not commands:
        return []
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([b"".join(map(hiredis.pack_command, commands))])
        return [_reply(client, conn, str(command[0])) for command in commands]
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        conn.disconnect()  # replies may still be on their way: this connection is out of step for good
        raise
    finally:
        pool.release(conn)


def _reply(client: redis.Redis, conn: Any, command: str) -> Any:
    try:
        return client.parse_response(conn, command)
    except ResponseError as exc:
        return exc
