"""Many commands in one round trip, without redis-py's per-command bookkeeping.

`client.pipeline(transaction=False)` costs several microseconds of Python per command (queueing, encoding
argument by argument, the reply loop) beside what hiredis needs to pack it; the fast worker sends about
ten commands per task, and going without that bookkeeping took 15-20% off its CPU per task. `send` packs
each command with hiredis in one call, writes them at once and reads the replies in order, each through
the client's own reply parsing (RESP2 or 3).
It never retries: a connection error is raised and the caller decides what to send again, as the
worker's Ledger does (its commands are idempotent but for counters that are best effort).

`transaction` is the same for MULTI/EXEC: an ordinary redis-py pipeline (WATCH, `multi()`, commands
queued by their methods) whose EXEC goes out packed by hiredis and comes back without reply callbacks,
for the engine's commit, which reads no reply (12% less engine CPU per run).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import hiredis
import redis
import redis.client
from redis.exceptions import DataError, ExecAbortError, ResponseError, WatchError

__all__ = ["pack", "reply", "send", "transaction"]


def send(client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """The replies to `commands`, in order; a command Redis refused has its ResponseError as its reply
    (as `execute(raise_on_error=False)` gives). Arguments: str, bytes, int or float."""
    if not commands:
        return []
    payload = pack(commands)
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([payload])
        return [reply(client, conn, str(command[0])) for command in commands]
    except BaseException:  # lost, timed out, or interrupted between two replies (a second SIGTERM)
        conn.disconnect()  # replies may still be on their way: this connection is out of step for good
        raise
    finally:
        pool.release(conn)


def pack(commands: Iterable[tuple[Any, ...]]) -> bytes:
    """The commands as RESP, packed by hiredis. A command name is one word ("XGROUP", "CREATE", ...), and an
    argument that is not str, bytes, int or float is a DataError, as redis-py would say."""
    try:
        return b"".join(map(hiredis.pack_command, commands))
    except TypeError as exc:
        raise DataError(f"cannot send {exc}: arguments are str, bytes, int or float") from exc


def reply(parser: redis.Redis | redis.client.Pipeline, conn: Any, command: str) -> Any:
    """The next reply on `conn`, parsed by `parser` (a client or a pipeline) as a reply to `command`, or the
    error Redis answered with: read either way, so the replies after it stay in step."""
    try:
        return parser.parse_response(conn, command)
    except ResponseError as exc:
        return exc


class _Transaction(redis.client.Pipeline):  # type: ignore[misc]
    """redis-py's transaction pipeline, but for how EXEC is sent and its replies returned (unparsed)."""

    def _execute_transaction(self, connection: Any, commands: Any, raise_on_error: bool) -> list[Any]:
        payload = pack([("MULTI",), *(args for args, _ in commands), ("EXEC",)])
        try:
            return self._exec(connection, payload, commands, raise_on_error)
        except (ResponseError, WatchError):
            raise  # every reply was read: the connection is in step
        except BaseException:
            connection.disconnect()  # interrupted between replies: out of step for good
            raise

    def _exec(self, connection: Any, payload: bytes, commands: Any, raise_on_error: bool) -> list[Any]:
        connection.send_packed_command([payload])
        errors: list[tuple[int, Exception]] = []
        for index, (args, _) in enumerate([(("MULTI",), {}), *commands]):  # +OK, then +QUEUED or a refusal
            try:
                connection.read_response()
            except ResponseError as exc:
                if index:
                    self.annotate_exception(exc, index, args)
                errors.append((max(0, index - 1), exc))
        try:
            replies = connection.read_response()
        except ExecAbortError:
            if errors:
                raise errors[0][1] from None
            raise
        self.watching = False
        if replies is None:
            raise WatchError("Watched variable changed.")
        for index, error in errors:
            replies.insert(index, error)
        if len(replies) != len(commands):
            connection.disconnect()
            raise ResponseError("Wrong number of response items from pipeline execution")
        if raise_on_error:
            self.raise_first_error(commands, replies)
        return list(replies)


def transaction(client: redis.Redis) -> redis.client.Pipeline:
    """`client.pipeline(transaction=True)` whose EXEC is packed by hiredis and whose replies come back as
    Redis sent them (no callbacks: for callers that read none, or only simple ones)."""
    pipe = client.pipeline(transaction=True)
    pipe.__class__ = _Transaction  # made by the client, with whatever its redis-py version passes
    return pipe
