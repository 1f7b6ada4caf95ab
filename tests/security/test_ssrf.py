"""Server-side request forgery through the http task kind, tried against real servers and sockets.

Every refusal is shown twice over: `run_http` fails with DestinationRefused, and no socket connected
anywhere (an audit hook sees every `socket.connect` of the process) so the server got no request.
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from executors.attempt import Attempt, LogBuffer, task_logger
from executors.kinds.egress import EgressPolicy, EgressTransport
from executors.kinds.errors import DestinationRefused, InvalidTaskOptions, TaskFailure, classify
from executors.kinds.http import run_http
from orchestrator.context import TaskContext

from ..helpers import Certificate, tls_certificate

# -- real servers, and every connect the process makes ------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """Records each request's path; redirects to the server's `location` when it has one."""

    server: Server

    def do_GET(self) -> None:  # noqa: N802
        self.server.hits.append(self.path)
        if self.server.location:
            self.send_response(302)
            self.send_header("Location", self.server.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = f"served by {self.server.server_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, location: str | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.hits: list[str] = []
        self.location = location
        super().__init__((host, port), Recorder)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@contextmanager
def serving(host: str, port: int = 0, location: str | None = None) -> Iterator[Server]:
    try:
        server = Server(host, port, location)
    except OSError as exc:
        pytest.skip(f"cannot listen on {host} here: {exc}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


_recording: list[tuple[Any, ...]] | None = None
_hooked = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and _recording is not None:
        _recording.append(tuple(args[1])[:2])


@pytest.fixture
def connects() -> Iterator[list[tuple[Any, ...]]]:
    """The (host, port) of every socket.connect in this process while the test runs."""
    global _recording, _hooked
    if not _hooked:  # an audit hook cannot be removed: install one, for the whole session
        sys.addaudithook(_audit)
        _hooked = True
    _recording = []
    try:
        yield _recording
    finally:
        _recording = None


@pytest.fixture
def loopback() -> Iterator[Server]:
    with serving("127.0.0.1") as server:
        yield server


def attempt(url: str, allow: tuple[str, ...] = (), **options: Any) -> Attempt:
    logs = LogBuffer()
    ctx = TaskContext(run_id="run-1", workflow="wf", task="t", node="n", attempt=1, key="run-1:n",
                      logger=task_logger("wf", "n", logs))
    return Attempt(ctx=ctx, kind="http", args=[], kwargs={"url": url, **options}, timeout_s=5.0, logs=logs,
                   egress=EgressPolicy.from_entries(allow))


# -- refused by default --------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "reason"), [
    ("http://127.0.0.1:{port}/", "127.0.0.1 is a loopback address"),
    ("http://localhost:{port}/", "is the loopback address|is a loopback address"),
    ("http://2130706433:{port}/", "127.0.0.1 is a loopback address"),  # decimal
    ("http://0x7f.0.0.1:{port}/", "127.0.0.1 is a loopback address"),  # hex
    ("http://127.1:{port}/", "127.0.0.1 is a loopback address"),  # short form
    ("http://0.0.0.0:{port}/", "0.0.0.0 is a 'this network' address"),  # Linux connects it to loopback
    ("http://[::ffff:127.0.0.1]:{port}/", "the IPv4-mapped form of 127.0.0.1, a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),  # cloud metadata
    ("http://[fd00:ec2::254]/latest/meta-data/", "is a unique-local address"),  # AWS metadata over IPv6
    ("http://10.0.0.1:{port}/", "10.0.0.1 is a private address"),
])
def test_a_non_global_destination_is_refused_before_any_connect(loopback: Server, connects: list[Any],
                                                                url: str, reason: str) -> None:
    with pytest.raises(DestinationRefused, match=reason) as caught:
        run_http(attempt(url.format(port=loopback.port)))

    assert "add it to ORCH_HTTP_ALLOW if this task must reach it" in str(caught.value)
    assert classify(caught.value) == ("DestinationRefused", False)
    assert connects == []
    assert loopback.hits == []


def test_ipv6_loopback_is_refused(connects: list[Any]) -> None:
    with serving("::1") as server:
        with pytest.raises(DestinationRefused, match=r"refused to connect to ::1 port \d+: ::1 is the loopback"):
            run_http(attempt(f"http://[::1]:{server.port}/"))

    assert connects == []
    assert server.hits == []


@pytest.mark.parametrize(("url", "message"), [
    ("http://0177.0.0.1:{port}/", "not a valid URL"),  # octal: httpx refuses the URL itself
    ("file:///etc/passwd", "must be an http:// or https:// URL"),
    ("ftp://127.0.0.1:{port}/", "must be an http:// or https:// URL"),
    ("gopher://127.0.0.1:{port}/_GET", "must be an http:// or https:// URL"),
])
def test_other_forms_and_schemes_are_invalid_options(loopback: Server, connects: list[Any], url: str,
                                                      message: str) -> None:
    with pytest.raises(InvalidTaskOptions, match=message):
        run_http(attempt(url.format(port=loopback.port)))

    assert connects == []
    assert loopback.hits == []


def test_a_refusal_shows_neither_credentials_nor_the_query(loopback: Server) -> None:
    with pytest.raises(DestinationRefused) as caught:
        run_http(attempt(f"http://admin:hunter2@127.0.0.1:{loopback.port}/x?token=s3cret"))

    message = str(caught.value)
    assert message.startswith(f"GET http://127.0.0.1:{loopback.port}/x: refused to connect to 127.0.0.1")
    assert "hunter2" not in message and "s3cret" not in message and "admin" not in message


# -- opened by the allowlist ---------------------------------------------------------------------------

def test_an_allowed_address_is_reached(loopback: Server, connects: list[Any]) -> None:
    result = run_http(attempt(f"http://127.0.0.1:{loopback.port}/hello", allow=("127.0.0.1",)))

    assert (result["status"], result["body"]) == (200, "served by 127.0.0.1")
    assert loopback.hits == ["/hello"]
    assert connects == [("127.0.0.1", loopback.port)]


def test_an_allowed_host_name_is_reached_at_the_address_it_resolved_to(loopback: Server,
                                                                        connects: list[Any]) -> None:
    result = run_http(attempt(f"http://localhost:{loopback.port}/", allow=("localhost",)))

    assert result["body"] == "served by 127.0.0.1"
    assert ("127.0.0.1", loopback.port) in connects


# -- redirects -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("allow", "host", "start"), [
    ("127.0.0.2/32", "127.0.0.2", "http://127.0.0.2:{port}/go"),
    ("localhost", "127.0.0.1", "http://localhost:{port}/go"),
])
def test_a_redirect_to_a_refused_destination_is_not_followed(connects: list[Any], allow: str, host: str,
                                                             start: str) -> None:
    with serving("127.0.0.1") as secret:
        with serving(host, location=f"http://127.0.0.1:{secret.port}/secret") as redirector:
            with pytest.raises(DestinationRefused,
                               match=f"refused to connect to 127.0.0.1 port {secret.port}: 127.0.0.1 is a "
                                     "loopback address"):
                run_http(attempt(start.format(port=redirector.port), allow=(allow,)))

    assert redirector.hits == ["/go"]
    assert secret.hits == []
    assert ("127.0.0.1", secret.port) not in connects


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/", "ws://127.0.0.1:1/"])
def test_a_redirect_to_another_scheme_is_refused(loopback: Server, location: str) -> None:
    loopback.location = location

    with pytest.raises(DestinationRefused, match=f"refused a {location.split(':')[0]}:// URL"):
        run_http(attempt(f"http://127.0.0.1:{loopback.port}/go", allow=("127.0.0.1",)))


# -- DNS rebinding -------------------------------------------------------------------------------------

def test_a_name_is_resolved_once_and_the_address_checked_is_the_one_connected_to(
        monkeypatch: pytest.MonkeyPatch, connects: list[Any]) -> None:
    """DNS rebinding: the name answers an allowed address when checked, loopback when fetched.

    `socket.getaddrinfo` is replaced for the one name `rebind.test`: it plays the attacker's DNS
    server, which answers 127.0.0.2 (allowed here) to the first query and 127.0.0.1 to every later one,
    as a real server with a TTL of 0 can. Nothing of the thing under test is replaced: the backend,
    the policy, the sockets and the servers are real, and IP literals go to the real resolver.
    """
    with serving("127.0.0.1") as secret, serving("127.0.0.2", port=secret.port) as decoy:
        queries: list[str] = []
        real_getaddrinfo = socket.getaddrinfo

        def attacker_dns(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != "rebind.test":
                return real_getaddrinfo(host, port, *args, **kwargs)
            queries.append(host)
            return real_getaddrinfo("127.0.0.2" if len(queries) == 1 else "127.0.0.1", port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", attacker_dns)
        url = f"http://rebind.test:{secret.port}/secret"
        policy = EgressPolicy.from_entries(["127.0.0.2/32"])

        # The attack works against a check-then-fetch: the check resolves 127.0.0.2, the fetch 127.0.0.1.
        checked = [info[4][0] for info in socket.getaddrinfo("rebind.test", secret.port)]
        assert policy.check("rebind.test", checked).allowed
        assert httpx.get(url, trust_env=False).text == "served by 127.0.0.1"
        assert secret.hits == ["/secret"]

        secret.hits.clear()
        queries.clear()
        connects.clear()
        result = run_http(attempt(url, allow=("127.0.0.2/32",)))

    assert result["body"] == "served by 127.0.0.2"
    assert queries == ["rebind.test"]
    assert connects == [("127.0.0.2", secret.port)]
    assert (decoy.hits, secret.hits) == (["/secret"], [])


# -- TLS -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A certificate for the name `localhost` only (no IP address in it)."""
    return tls_certificate(tmp_path_factory.mktemp("tls"), "localhost")


def test_tls_verifies_the_certificate_for_the_urls_host_name(certificate: Certificate, connects: list[Any]) -> None:
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(certificate.cert, certificate.key)
    trusting = ssl.create_default_context(cafile=str(certificate.ca))

    def get(url: str, allow: str) -> httpx.Response:
        transport = EgressTransport(EgressPolicy.from_entries([allow]), verify=trusting)
        with httpx.Client(transport=transport, trust_env=False) as client:
            return client.get(url)

    with serving("127.0.0.1") as server:
        server.socket = server_tls.wrap_socket(server.socket, server_side=True)

        # Connected to the vetted 127.0.0.1, verified as localhost: the certificate names only that.
        assert get(f"https://localhost:{server.port}/", "localhost").text == "served by 127.0.0.1"
        assert ("127.0.0.1", server.port) in connects
        # The same server by its address: the certificate does not name 127.0.0.1, so it is refused.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            get(f"https://127.0.0.1:{server.port}/", "127.0.0.1")
        # And verification is on: a certificate nobody trusts fails.
        transport = EgressTransport(EgressPolicy.from_entries(["localhost"]), verify=ssl.create_default_context())
        with httpx.Client(transport=transport, trust_env=False) as client, \
                pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get(f"https://localhost:{server.port}/")

    assert server.hits == ["/"]


def test_a_refusal_is_a_final_task_failure() -> None:
    assert issubclass(DestinationRefused, TaskFailure) and DestinationRefused.retryable is False
