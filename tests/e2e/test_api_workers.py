"""`orch api --workers N`: N API processes on one port, supervised, as a user runs it to use every core.

A real `orch api --workers 2` on a real Redis: both copies listen on the port (SO_REUSEPORT) and answer
requests (events accepted over HTTP reach the stream); a copy that dies is replaced while the API keeps
answering; SIGTERM stops every copy and the supervisor exits 0.
"""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from pathlib import Path

import httpx
import psutil
import pytest

from ..helpers import EXAMPLES, RedisServer, free_port, wait_for
from .conftest import Processes, create_token, orch, orch_env

pytestmark = pytest.mark.e2e


def _answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:  # noqa: S310 - our own loopback URL
            return bool(response.status == 200)
    except OSError:
        return False


def _copies(pid: int, port: int) -> list[psutil.Process]:
    """The supervisor's children listening on `port` (each on its own SO_REUSEPORT socket)."""
    out = []
    for child in psutil.Process(pid).children():
        try:
            if any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in child.net_connections()):
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


def test_two_api_processes_share_the_port_are_replaced_when_they_die_and_stop_together(tmp_path: Path) -> None:
    server = RedisServer()
    port = free_port()
    procs = Processes(orch_env(server.url, EXAMPLES, ORCH_API_PORT=str(port)), tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        token = create_token(procs.env, "e2e", "events:write")
        supervisor = procs.start("api", "api", "--workers", "2")
        wait_for(lambda: _answers(base) and len(_copies(supervisor.pid, port)) == 2, 60, "two API copies listening")

        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/cloudevents+json"}
        for n in range(40):  # a new connection each: the kernel hands them to either copy
            event = {"specversion": "1.0", "type": "user.signup", "source": "/e2e", "id": f"w-{n}", "data": {}}
            response = httpx.post(f"{base}/events", headers=headers, content=json.dumps(event))
            assert response.status_code == 202, response.text
        assert server.client().xlen("orch:events") == 40

        first = _copies(supervisor.pid, port)[0]
        first.kill()
        def replaced() -> bool:
            pids = {c.pid for c in _copies(supervisor.pid, port)}
            return len(pids) == 2 and first.pid not in pids

        wait_for(replaced, 60, "the dead copy to be replaced")
        assert _answers(base) and "exited (-9)" in procs.log("api")

        rival = orch("api", "--workers", "2", env=procs.env, check=False, timeout=60)  # the same port
        assert rival.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in rival.stderr, rival.stderr

        copies = _copies(supervisor.pid, port)
        assert procs.stop("api", signal.SIGINT) == 0, procs.log("api")  # Ctrl-C: a clean stop
        assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in copies)
    finally:
        procs.stop_all()
        server.stop()


def test_port_zero_is_chosen_once_for_every_copy(tmp_path: Path) -> None:
    server = RedisServer()
    procs = Processes(orch_env(server.url, EXAMPLES, ORCH_API_PORT="0"), tmp_path)
    try:
        supervisor = procs.start("api", "api", "--workers", "2")
        found = wait_for(lambda: re.search(r"worker processes on 127\.0\.0\.1:(\d+)", procs.log("api")), 60,
                         "the supervisor to say its port")
        port = int(found.group(1))
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}") and len(_copies(supervisor.pid, port)) == 2, 60,
                 "both copies on the port the supervisor chose")
    finally:
        procs.stop_all()
        server.stop()
