"""Test helpers shared by every tier: real redis-servers, conditions with deadlines, free ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from orchestrator.embedded_redis import find_redis_binary

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], T], timeout_s: float = 10.0, message: str = "condition",
              interval_s: float = 0.02) -> T:
    """Poll `predicate` until it returns something truthy; fail with `message` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {message} (last value: {last!r})")


class RedisServer:
    """A redis-server of our own on a free loopback port, in a temporary directory.

    `password`: the default user's (requirepass, or set in an aclfile passed in `extra`); `tls`: the server
    speaks only TLS, with a certificate for 127.0.0.1 made here (`ca` is its file), and `url` is rediss://.
    """

    def __init__(self, *extra: str, password: str | None = None, tls: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="orch-test-redis-"))
        self.port = free_port()
        self.password = password
        self.ca: Path | None = None
        binary, _ = find_redis_binary()
        ports = ["--port", str(self.port)]
        if tls:
            self.ca = self_signed_certificate(self.dir)
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.ca),
                     "--tls-key-file", str(self.dir / "key.pem"), "--tls-ca-cert-file", str(self.ca),
                     "--tls-auth-clients", "no"]
        auth = ["--requirepass", password] if password and not any(e == "--aclfile" for e in extra) else []
        self.process = subprocess.Popen(
            [binary, *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", "redis.log", *auth, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = self.url_for("", password)
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _pings(client), 10, "redis-server to start")
        client.close()

    def url_for(self, user: str, password: str | None) -> str:
        """The URL of this server for `user` (empty: the default user) with `password`."""
        auth = f"{user}:{password}@" if password else ""
        scheme, query = ("rediss", f"?ssl_ca_certs={self.ca}") if self.ca else ("redis", "")
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0{query}"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def self_signed_certificate(folder: Path) -> Path:
    """A certificate (and key.pem beside it) for 127.0.0.1 and localhost, made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS test SKIPPED: openssl is not installed, so no certificate can be made "
                    "(apt-get install openssl)")
    cert = folder / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(folder / "key.pem"),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    return cert


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
