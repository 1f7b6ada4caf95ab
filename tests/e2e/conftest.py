"""End-to-end fixtures: real `orch` processes (api, engine, workers) on a Redis of the module's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from orchestrator.jsonutil import loads

from ..helpers import EXAMPLES, RedisServer, free_port, wait_for

pytestmark = pytest.mark.e2e


def orch_env(url: str | None, project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update({"ORCH_PROJECT": str(project), "PYTHONUNBUFFERED": "1", **extra})
    if url:
        env["ORCH_REDIS_URL"] = url
    return env


def orch(*args: str, env: dict[str, str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one `orch` command to completion, as a user would."""
    result = subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"orch {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def orch_json(*args: str, env: dict[str, str]) -> Any:
    return loads(orch(*args, "--json", env=env).stdout)


def create_token(env: dict[str, str], name: str, *scopes: str) -> str:
    """A new API token, made as an operator makes one: `orch tokens create`."""
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    return str(orch_json("tokens", "create", "--name", name, *args, env=env)["token"])


@dataclass
class Processes:
    """Long-running `orch` processes started by a test, stopped (and their logs kept) at the end."""

    env: dict[str, str]
    logs: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([sys.executable, "-m", "orchestrator", *args], env={**self.env, **extra_env},
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.running[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        process = self.running.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError(f"{name} did not stop within {timeout_s}s:\n{self.log(name)}") from None
        return int(process.returncode)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


@dataclass
class Stack:
    """A whole orch deployment: Redis, api, engine, workers; `env` reaches it from `orch` commands."""

    redis: RedisServer
    procs: Processes
    api: str
    project: Path
    token: str = ""
    _http: httpx.Client | None = None

    @property
    def env(self) -> dict[str, str]:
        return self.procs.env

    def http(self) -> httpx.Client:
        """An HTTP client sending the stack's admin token (made with `orch tokens create`, as a user would)."""
        if self._http is None:
            self._http = httpx.Client(base_url=self.api, timeout=10, headers={"Authorization": f"Bearer {self.token}"})
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


def start_stack(tmp: Path, project: Path = EXAMPLES, workers: int = 1, server: RedisServer | None = None,
                **extra_env: str) -> Stack:
    """Start the deployment on `server` (default: a new Redis), for `project` written beforehand."""
    server = server or RedisServer()
    port = free_port()
    procs = Processes(orch_env(server.url, project, ORCH_API_PORT=str(port), **extra_env), tmp)
    token = create_token(procs.env, "e2e", "admin")
    procs.start("api", "api")
    procs.start("engine", "engine")
    for i in range(workers):
        procs.start(f"worker-{i}", "worker")
    stack = Stack(server, procs, f"http://127.0.0.1:{port}", project, token)
    client = server.client()
    wait_for(lambda: _healthy(stack.api), 30, "orch api to answer /healthz")
    wait_for(lambda: _has_engine_group(client), 30, "the engine to create its consumer group")
    wait_for(lambda: client.scard("rq:workers") >= workers, 30, "the workers to register")
    client.close()
    return stack


def stop_stack(stack: Stack) -> None:
    stack.close()
    try:
        stack.procs.stop_all()
    finally:
        stack.redis.stop()


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _has_engine_group(client: redis.Redis) -> bool:
    try:
        return any(g["name"] == b"engine" for g in client.xinfo_groups("orch:events"))
    except redis.ResponseError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One running deployment of the example project, shared by the tests of a module."""
    # the example deploy check calls the stack's own API, on loopback: the workers must be allowed to
    running = start_stack(tmp_path_factory.mktemp("stack"), workers=2, ORCH_HTTP_ALLOW="127.0.0.1")
    yield running
    stop_stack(running)
