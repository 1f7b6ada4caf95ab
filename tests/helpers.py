"""Test helpers shared by every tier: real redis-servers, conditions with deadlines, free ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis
import trustme

from orchestrator.embedded_redis import find_redis_binary

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def promtool() -> str | None:
    """Prometheus's promtool: $ORCH_PROMTOOL, on PATH, or the one `make test` fetches into .cache/tools."""
    local = ROOT / ".cache" / "tools" / "promtool"
    return os.environ.get("ORCH_PROMTOOL") or shutil.which("promtool") or (str(local) if local.exists() else None)


PROMTOOL_MISSING = "promtool not available (`make test` fetches it from Debian's prometheus package)"


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

    `password`: the default user's (requirepass), or `user`'s in an aclfile passed in `extra` (`url` and
    `client()` authenticate as them); `tls`: the server speaks only TLS, with a certificate for 127.0.0.1
    made here, or the one given (servers that replicate must trust each other's), `ca` is its CA file and
    `url` is rediss://; `port`: a port chosen beforehand (processes were told of it before it started).
    """

    def __init__(self, *extra: str, password: str | None = None, user: str = "", tls: bool | Certificate = False,
                 port: int = 0) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="orch-test-redis-"))
        self.port = port or free_port()
        self.password = password
        self.ca: Path | None = None
        binary, _ = find_redis_binary()
        ports = ["--port", str(self.port)]
        if tls:
            tls_files = tls if isinstance(tls, Certificate) else tls_certificate(self.dir, "127.0.0.1", "localhost")
            self.ca = tls_files.ca
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(tls_files.cert),
                     "--tls-key-file", str(tls_files.key), "--tls-ca-cert-file", str(tls_files.ca),
                     "--tls-auth-clients", "no"]
        auth = ["--requirepass", password] if password and not any(e == "--aclfile" for e in extra) else []
        self.process = subprocess.Popen(
            [binary, *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", "redis.log", *auth, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = self.url_for(user, password)
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


@dataclass(frozen=True)
class Certificate:
    """A server certificate and its key, issued by a CA made for the test (`ca`: what clients trust)."""

    ca: Path
    cert: Path
    key: Path


def tls_certificate(folder: Path, *names: str) -> Certificate:
    """A test CA, and a certificate it issued for `names` (host names or IP addresses), as PEM files."""
    authority = trustme.CA()
    issued = authority.issue_cert(*names)
    found = Certificate(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    authority.cert_pem.write_to_path(str(found.ca))
    issued.cert_chain_pems[0].write_to_path(str(found.cert))
    issued.private_key_pem.write_to_path(str(found.key))
    return found


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
