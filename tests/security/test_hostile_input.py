"""Hostile bodies over HTTP: oversized, deeply nested, lying about their length. Each gets a clear 4xx
from a real `orch api`, nothing is published, and the server goes on serving."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from ..e2e.conftest import Processes, create_token, orch_env
from ..helpers import RedisServer, free_port, wait_for
from ..projects import make_project

SECRET = "s3cret"
RULES = """
hooks:
  - {name: gh, verify: github, secret_env: GH_SECRET, max_body_bytes: 65536}
"""


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, RedisServer]]:
    tmp = tmp_path_factory.mktemp("hostile")
    server = RedisServer()
    project = make_project(tmp / "project", rules=RULES)
    port = free_port()
    procs = Processes(orch_env(server.url, project, ORCH_API_PORT=str(port), GH_SECRET=SECRET,
                               ORCH_API_HEADER_TIMEOUT_S="1", ORCH_API_BODY_TIMEOUT_S="1"), tmp)
    token = create_token(procs.env, "writer", "events:write")
    procs.start("api", "api")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _up(base), 30, "orch api")
    yield base, token, server
    procs.stop_all()
    server.stop()


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def post_event(base: str, token: str, body: bytes, content_type: str = "application/cloudevents+json") -> httpx.Response:
    return httpx.post(f"{base}/events", content=body, timeout=30,
                      headers={"authorization": f"Bearer {token}", "content-type": content_type})


def signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"x-hub-signature-256": f"sha256={digest}", "x-github-event": "push", "content-type": "application/json"}


def test_an_oversized_event_is_413_before_it_is_read(api: tuple[str, str, RedisServer]) -> None:
    base, token, _ = api
    huge = json.dumps({"specversion": "1.0", "id": "x", "source": "/t", "type": "t", "data": "x" * (2 << 20)})
    refused = post_event(base, token, huge.encode())
    assert refused.status_code == 413 and "over the limit" in refused.json()["error"]


def test_a_body_that_lies_about_its_length_is_cut_off_while_it_streams(api: tuple[str, str, RedisServer]) -> None:
    base, token, _ = api

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"x" * 32768  # 2 MiB in all, sent chunked (no Content-Length to refuse up front)

    refused = httpx.post(f"{base}/events", content=chunks(), timeout=30,
                         headers={"authorization": f"Bearer {token}", "content-type": "application/cloudevents+json"})
    assert refused.status_code == 413


@pytest.mark.parametrize("depth", [100, 1_025, 10_000])
def test_deeply_nested_json_is_refused_with_a_4xx(api: tuple[str, str, RedisServer], depth: int) -> None:
    base, token, server = api
    as_data = b'{"specversion": "1.0", "id": "n-%d", "source": "/t", "type": "t", "data": %s}' % (depth, nested(depth))
    event = post_event(base, token, as_data)
    batch = post_event(base, token, nested(depth), "application/cloudevents-batch+json")
    hooked = httpx.post(f"{base}/hooks/gh", content=nested(depth), headers=signed(nested(depth)), timeout=30)

    for response in (event, batch, hooked):
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]
    client = server.client()
    assert client.xlen("orch:events") == 0, "nothing hostile was published"
    client.close()
    assert _up(base)


def test_a_webhook_body_over_its_endpoints_limit_is_413(api: tuple[str, str, RedisServer]) -> None:
    base, _, _ = api
    body = json.dumps({"padding": "x" * 70_000}).encode()
    assert httpx.post(f"{base}/hooks/gh", content=body, headers=signed(body), timeout=30).status_code == 413


def test_garbage_on_the_socket_gets_an_error_and_the_server_stays_up(api: tuple[str, str, RedisServer]) -> None:
    base, _, _ = api
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n")
        reply = sock.recv(1024)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400")
    assert _up(base)



def test_orch_api_cuts_off_a_client_that_sends_its_headers_byte_by_byte(api: tuple[str, str, RedisServer]) -> None:
    """The real `orch api` serves through api/server.py (tests/security/test_slow_clients.py tests it in depth)."""
    base, token, _ = api
    host, port = base.removeprefix("http://").split(":")
    head = f"GET /runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Pad: {'a' * 200}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.settimeout(0.1)
        answer = b""
        for byte in head:  # one byte every 100 ms: the whole head would take over 25 s
            try:
                sock.sendall(bytes([byte]))
                answer = sock.recv(1024)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if answer is not None:
                break
    assert answer.startswith(b"HTTP/1.1 408") or answer == b"", answer
    assert _up(base)
