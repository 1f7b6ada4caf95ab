"""The health listener of `orch engine|worker|triggers --health-port N`, and the client `orch health` uses.

    GET /livez    200 {"ok": true, ...} while the process's loops progress; 503 with the reason otherwise
    GET /readyz   200 when also Redis answers PING and the role's conditions hold; 503 otherwise

Plain HTTP, no authentication, JSON bodies that say only ages and reasons (no event data, no keys). It
listens on ORCH_HEALTH_HOST (127.0.0.1 by default: bind 0.0.0.0 only when asked, as a Kubernetes
httpGet probe needs, since the kubelet calls the pod's IP). Why a listener: a probe every few seconds
on every pod costs an HTTP request here, where an exec probe would start a Python interpreter (~0.3 s
of CPU) each time. `orch health` (cli/health_cmd.py) is the exec form of the same check, for Compose
healthchecks in an image without curl: it asks this listener, so both share one check function.
Each request is answered on its own thread (a slow PING never blocks /livez).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis

from . import health
from .settings import Settings

__all__ = ["HealthServer", "ask", "verdicts"]

log = logging.getLogger(__name__)


def verdicts(client: redis.Redis | None, settings: Settings, ready: bool) -> health.Verdict:
    """Liveness, or (with `ready`) readiness, of this process now."""
    beats, conditions = health.state()
    live = health.liveness(beats, time.monotonic(), settings.health_stuck_after_s)
    if not ready:
        return live
    error = health.ping(client) if client is not None else "no Redis client"
    return health.readiness(live, error, conditions)


class HealthServer:
    """Serves /livez and /readyz from a daemon thread."""

    def __init__(self, role: str, client: redis.Redis, settings: Settings, port: int, host: str | None = None) -> None:
        self.role = role
        self._client = health.probe_client(client, settings.health_redis_timeout_s)
        self._settings = settings
        server = self
        handler = type("Handler", (_Handler,), {"server_ref": server})
        self._httpd = ThreadingHTTPServer((host or settings.health_host, port), handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("%s: health listener on %s:%d (/livez, /readyz)", self.role, self._settings.health_host, self.port)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._client.close()

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        if path not in ("/livez", "/readyz"):
            return 404, {"ok": False, "reason": "not found: GET /livez or /readyz"}
        verdict = verdicts(self._client, self._settings, ready=path == "/readyz")
        return (200 if verdict.ok else 503), {"role": self.role, **verdict.as_dict()}


class _Handler(BaseHTTPRequestHandler):
    server_ref: HealthServer
    protocol_version = "HTTP/1.1"
    timeout = 5  # seconds a connection may sit idle or slow: a probe is one request, not a thread held open

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        status, body = self.server_ref.answer(self.path.split("?", 1)[0])
        data = json.dumps(body, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not worth a log line
        log.debug("health: " + format, *args)


# No proxy: http_proxy and friends (which Docker passes into containers) must not reroute a probe of 127.0.0.1.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ask(url: str, timeout_s: float) -> tuple[int | None, dict[str, Any]]:
    """GET a health URL: (HTTP status, body); (None, the reason) when nothing answers."""
    try:
        with _DIRECT.open(url, timeout=timeout_s) as response:
            return int(response.status), _body(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), _body(exc.read())
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, {"ok": False, "reason": f"no answer from {url}: {reason}"}


def _body(data: bytes) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return {"ok": False, "reason": f"unexpected answer: {data[:200]!r}"}
    return body
