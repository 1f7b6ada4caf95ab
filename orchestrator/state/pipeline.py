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

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import hiredis
import redis
import redis.client
from redis._parsers import hiredis as _hiredis_parser
from redis.exceptions import DataError, ExecAbortError, ReadOnlyError, ResponseError, WatchError

__all__ = ["flat", "pack", "raw_replies", "reply", "send", "transaction"]

_NOT_ENOUGH_DATA = getattr(_hiredis_parser, "NOT_ENOUGH_DATA", False)  # what hiredis's reader says (redis-py's choice)


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
        callbacks = client.response_callbacks
        return [_parsed(callbacks, str(command[0]).upper(), raw)
                for command, raw in zip(commands, raw_replies(conn, len(commands)), strict=True)]
    except BaseException:  # lost, timed out, or interrupted between two replies (a second SIGTERM)
        conn.disconnect()  # replies may still be on their way: this connection is out of step for good
        raise
    finally:
        pool.release(conn)


def flat(fields: Mapping[Any, Any]) -> list[Any]:
    """A mapping as a command's field, value, ... arguments (HSET, XADD)."""
    return [item for pair in fields.items() for item in pair]


def pack(commands: Iterable[tuple[Any, ...]]) -> bytes:
    """The commands as RESP, packed by hiredis. A command name is one word ("XGROUP", "CREATE", ...), and an
    argument that is not str, bytes, int or float is a DataError, as redis-py would say."""
    try:
        return b"".join(map(hiredis.pack_command, commands))
    except TypeError as exc:
        raise DataError(f"cannot send {exc}: arguments are str, bytes, int or float") from exc


def raw_replies(conn: Any, count: int) -> list[Any]:
    """The next `count` replies on `conn` as Redis sent them (no callbacks), a refusal as its ResponseError
    (not raised). Read straight from hiredis's reader where redis-py's parser has one: a tenth of the time of
    `conn.read_response()` per reply, which the engine's MULTI (a +QUEUED per command) and the worker's
    round trip pay a dozen times per task; push notifications go to the parser as redis-py's own read does."""
    parser: Any = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    if reader is None or not hasattr(parser, "read_from_socket"):  # redis-py's pure-Python parser
        return [_read(conn) for _ in range(count)]
    push = getattr(parser, "_hiredis_PushNotificationType", None)
    out: list[Any] = []
    while len(out) < count:
        raw = reader.gets()
        if raw is _NOT_ENOUGH_DATA:
            _read_more(parser)
        elif isinstance(raw, redis.ConnectionError):
            raise raw
        elif push is not None and isinstance(raw, push):
            parser.handle_push_response(raw)
        elif isinstance(raw, ReadOnlyError) and getattr(getattr(conn, "connection_pool", None), "is_master", False):
            conn.disconnect()  # a demoted primary: ask the Sentinels again, as their connections' own read does
            raise redis.ConnectionError("The previous master is now a replica")
        else:
            out.append(raw)
    return out


def _read_more(parser: Any) -> None:
    """Feed the reader from the socket; a reset or broken connection (an OSError, an SSL error) is a
    redis.ConnectionError, as redis-py's own read makes it, so callers ride it out like any lost connection."""
    try:
        parser.read_from_socket()
    except redis.RedisError:
        raise
    except TimeoutError as exc:
        raise redis.TimeoutError(f"Timeout reading from socket: {exc.args}") from exc
    except OSError as exc:
        raise redis.ConnectionError(f"Error while reading from socket: {exc.args}") from exc


def _read(conn: Any) -> Any:
    try:
        return conn.read_response()
    except ResponseError as exc:
        return exc


def _parsed(callbacks: Any, command: str, raw: Any) -> Any:
    """`raw` through the client's callback for `command`, as `parse_response` would (an error stays one)."""
    callback = callbacks.get(command)
    return callback(raw) if callback is not None and not isinstance(raw, ResponseError) else raw


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
        queued = raw_replies(connection, len(commands) + 1)  # +OK, then +QUEUED or a refusal
        for index, ((args, _), answer) in enumerate(zip([(("MULTI",), {}), *commands], queued, strict=True)):
            if isinstance(answer, ResponseError):
                if index:
                    self.annotate_exception(answer, index, args)
                errors.append((max(0, index - 1), answer))
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
