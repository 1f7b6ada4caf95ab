"""Serve an ASGI app with uvicorn, with deadlines that a slow client cannot hold open.

uvicorn does not limit how long a client may take to send a request. A client that trickles
its headers a byte at a time (slowloris), or connects and sends nothing, keeps a connection and
its buffers for ever, and enough such clients exhaust the server. Under httptools, uvicorn's
default parser, the size of a head is not limited either: `h11_max_incomplete_event_size` only
applies to h11.

`serve` runs uvicorn with its own protocol class: a subclass of uvicorn's httptools or h11
protocol that keeps one timer for each connection.

    connection made, or the first byte of a later request  -> head: header_timeout_s
    head complete                                           -> body: body_timeout_s
    body complete                                           -> no deadline (the app is working;
                                                               between requests uvicorn's own
                                                               keep-alive timeout applies)

When the timer expires, the server answers 408 Request Timeout and closes the connection. If
part of a response has already been sent, it closes the connection without answering. A head
larger than `max_head_bytes` is refused: 431 under httptools, and 400 from uvicorn under h11.
These subclasses rely on uvicorn internals (the parser callbacks, `handle_events`, `cycle`,
`pipeline`), which are not public API. tests/security/test_slow_clients.py runs both protocols
against a real server.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar, Literal, cast

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["Limits", "serve"]

Phase = Literal["idle", "head", "body"]


@dataclass(frozen=True)
class Limits:
    """How long a client may take to send a request head and a request body, and how large a head may be."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_head_bytes: int = 64 * 1024


def serve(app: ASGIApp, *, host: str, port: int, log_level: str, header_timeout_s: float = 10.0,
          body_timeout_s: float = 30.0, max_head_bytes: int = 64 * 1024,
          http: Literal["auto", "httptools", "h11"] = "auto", sock: socket.socket | None = None,
          **uvicorn_options: Any) -> None:
    """Run `app` under uvicorn until it is told to stop, enforcing the limits above on every connection;
    on `sock` (already listening, shared by `orch api --workers` copies) instead of binding host:port."""
    limits = Limits(header_timeout_s, body_timeout_s, max_head_bytes)
    options: dict[str, Any] = {"log_config": None, "access_log": False, "timeout_graceful_shutdown": 10}
    options.update(uvicorn_options)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, http=_protocol_class(http, limits),
                            h11_max_incomplete_event_size=max_head_bytes, **options)
    uvicorn.Server(config).run(sockets=[sock] if sock is not None else None)


def _protocol_class(http: str, limits: Limits) -> type[asyncio.Protocol]:
    base: type[_Deadline] = _GuardedH11
    if http != "h11":
        try:
            base = _guarded_httptools()
        except ImportError:
            if http == "httptools":
                raise
    return cast(type[asyncio.Protocol], type(base.__name__, (base,), {"limits": limits}))


def _reply(status: int) -> bytes:
    phrase = HTTPStatus(status).phrase.encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, phrase, len(phrase), phrase))


class _Deadline(asyncio.Protocol):
    """One timer for each connection, with the part of the request it is waiting for.

    A mixin placed before uvicorn's protocol class. It declares only the attributes of that class that it uses.
    """

    limits: ClassVar[Limits] = Limits()
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any  # the protocol's current RequestResponseCycle, or None before the first request
    _phase: Phase = "idle"
    _timer: asyncio.TimerHandle | None = None
    _head_bytes = 0  # of the head being received; only httptools needs the count

    def _arm(self, phase: Phase) -> None:
        self._disarm()
        timeout_s = self.limits.header_timeout_s if phase == "head" else self.limits.body_timeout_s
        self._phase, self._timer = phase, self.loop.call_later(timeout_s, self._expire)
        self._head_bytes = 0

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._phase, self._timer = "idle", None

    def _expire(self) -> None:
        # After a WebSocket upgrade the transport belongs to another protocol: it is not ours to close.
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        self._refuse(408 if self._may_answer() else None)

    def _refuse(self, status: int | None) -> None:
        self._disarm()
        if status is not None:
            self.transport.write(_reply(status))
        # A client that does not read either would hold a graceful close open: drop what it has not taken.
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()

    def _may_answer(self) -> bool:
        """Whether a 408 would be the next response on the wire: nothing of another one has been sent."""
        if self._phase == "head":
            return self.cycle is None or bool(self.cycle.response_complete)
        # Only httptools queues requests behind the one being answered: a 408 must not overtake their responses.
        return self.cycle is not None and not self.cycle.response_started and not getattr(self, "pipeline", None)


class _GuardedH11(_Deadline, H11Protocol):
    """uvicorn's h11 protocol with deadlines. h11 itself bounds the head (`h11_max_incomplete_event_size`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase == "idle" and self.conn.their_state is h11.IDLE:
            self._arm("head")
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        if state is h11.SEND_BODY and self._phase != "body":
            self._arm("body")
        elif state is not h11.IDLE and state is not h11.SEND_BODY:
            self._disarm()


def _guarded_httptools() -> type[_Deadline]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class _GuardedHttpTools(_Deadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with deadlines, and a bound on the head, which llhttp does not have."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm("head")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            # Any byte between requests starts the next head: llhttp skips blank lines without a message begin,
            # and each one cancels uvicorn's keep-alive timer, so "\r\n" every few seconds would hold the connection.
            if self._phase == "idle":
                self._arm("head")
            # Count only chunks fed wholly inside one head. A head that begins after another request in the same
            # chunk does not count that chunk, so the bound may be passed by up to one read, but a pipelined
            # request is never refused for the bytes of the request before it.
            head_timer = self._timer if self._phase == "head" else None
            super().data_received(data)
            if head_timer is None or self._timer is not head_timer or self.transport.is_closing():
                return
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse(431 if self._may_answer() else None)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._phase != "head":
                self._arm("head")

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._arm("body")

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

    return _GuardedHttpTools
