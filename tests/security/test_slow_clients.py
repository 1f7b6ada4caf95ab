"""A slow client cannot hold `orch api`: `serve` times out slow heads and slow bodies, and refuses huge heads.

Each test talks to a real server process, running `orchestrator.api.server.serve` with a two-route app and a
1 s deadline, through raw sockets, under both of uvicorn's HTTP protocols. A slow client is simulated by
sending a byte at a time. Between bytes the client waits on the socket, so it stops as soon as the server
answers or closes. The tests check what happened, not how long it took.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port, wait_for

SERVER = """
import sys
from fastapi import FastAPI, Request
from orchestrator.api.server import serve

app = FastAPI()

@app.get("/ping")
def ping() -> dict[str, bool]:
    return {"ok": True}

@app.post("/echo")
async def echo(request: Request) -> dict[str, int]:
    return {"size": len(await request.body())}

serve(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", http=sys.argv[2],
      header_timeout_s=1.0, body_timeout_s=1.0)
"""

# Each byte is sent 50 ms after the last, so a head like this one takes about 10 s in all: ten times the deadline.
SLOW_HEAD = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: " + b"x" * 200 + b"\r\n\r\n"
BYTE_INTERVAL_S = 0.05


@pytest.fixture(scope="module", params=["httptools", "h11"])
def port(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-c", SERVER, str(port), request.param], cwd=ROOT,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _started(process, port, log), 30, f"the {request.param} server to answer")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def _started(process: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the server exited:\n{log.read_text()}")
    try:
        return get(port, "/ping") == 200
    except OSError:
        return False


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def trickle(sock: socket.socket, data: bytes) -> int:
    """Send `data` a byte at a time until the server answers or closes. Return how many bytes were sent."""
    for sent in range(len(data)):
        readable, _, _ = select.select([sock], [], [], BYTE_INTERVAL_S)
        if readable:
            return sent
        try:
            sock.sendall(data[sent:sent + 1])
        except (BrokenPipeError, ConnectionResetError):
            return sent
    return len(data)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes the connection. A reset may lose some of it."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One response with a Content-Length from a keep-alive connection: its status and body.

    Use it only when one response is outstanding: bytes after that response are dropped.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ")[1]), body


def assert_timed_out(reply: bytes) -> None:
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408 Request Timeout"), reply


@pytest.mark.parametrize("sent", [b"", b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n"], ids=["nothing", "part"])
def test_a_client_that_stops_mid_head_gets_408(port: int, sent: bytes) -> None:
    with connect(port) as sock:
        sock.sendall(sent)
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_a_head_sent_byte_by_byte_is_cut_off_before_it_is_complete(port: int) -> None:
    with connect(port) as sock:
        sent = trickle(sock, SLOW_HEAD)
        assert sent < len(SLOW_HEAD)
        assert_timed_out(read_until_closed(sock))


def test_a_later_request_on_a_keep_alive_connection_has_its_own_deadline(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock) == (200, b'{"ok":true}')
        sent = trickle(sock, SLOW_HEAD)
        assert sent < len(SLOW_HEAD)
        assert_timed_out(read_until_closed(sock))


def test_blank_lines_between_requests_do_not_hold_a_keep_alive_connection(port: int) -> None:
    # Each byte would cancel uvicorn's keep-alive timer; llhttp skips blank lines without starting a message.
    blank_lines = b"\r\n" * 200
    with connect(port) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock) == (200, b'{"ok":true}')
        sent = trickle(sock, blank_lines)
        assert sent < len(blank_lines)
        reply = read_until_closed(sock)
    assert reply == b"" or reply.split(b" ")[1] in (b"408", b"400"), reply


def test_fifty_slow_clients_do_not_keep_an_ordinary_one_waiting(port: int) -> None:
    with contextlib.ExitStack() as stack:
        slow = [stack.enter_context(connect(port)) for _ in range(50)]
        for sock in slow:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: x")
        assert get(port, "/ping") == 200
        for sock in slow:
            assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
    assert get(port, "/ping") == 200


def test_a_head_over_the_size_bound_is_refused(port: int) -> None:
    with connect(port) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 256 * 1024 + b"\r\n\r\n")
        reply = read_until_closed(sock)
    assert reply == b"" or reply.split(b" ")[1] in (b"431", b"400"), reply[:200]
    assert get(port, "/ping") == 200


def test_a_large_head_within_the_bound_is_served(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 32 * 1024 + b"\r\n\r\n")
        assert read_response(sock) == (200, b'{"ok":true}')


def test_a_body_sent_byte_by_byte_is_cut_off_before_it_is_complete(port: int) -> None:
    body = b"b" * 1000
    with connect(port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
        sent = trickle(sock, body)
        assert sent < len(body)
        assert_timed_out(read_until_closed(sock))


def test_a_client_that_stops_mid_body_gets_408(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n" + b"b" * 10)
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_pipelined_requests_are_all_answered_in_order(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                     b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc"
                     b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        replies = read_until_closed(sock)
    assert replies.count(b"HTTP/1.1 200 OK\r\n") == 3, replies
    assert replies.endswith(b'{"ok":true}') and b'{"size":3}HTTP/1.1 200 OK' in replies, replies


def test_a_keep_alive_client_is_served_across_requests_and_pauses(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/ping")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b'{"ok":true}')
        first = conn.sock
        # Idle for longer than the head deadline, and less than uvicorn's 5 s keep-alive: the deadline starts with
        # the first byte of the next request, not at the end of the last response.
        select.select([first], [], [], 1.5)
        for size in (0, 5_000, 60_000, 200_000):
            conn.request("POST", "/echo", body=b"e" * size)
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b'{"size":%d}' % size)
        assert conn.sock is first
    finally:
        conn.close()
