"""`orch dev`: the whole system for one project in one process tree, for a first run and for development.

Starts Redis (an embedded redis-server unless ORCH_REDIS_URL is set), then `orch api`, `orch engine`,
a pool of N `orch worker` processes (`orch worker --concurrency N`) and, when the project declares schedules or watches, `orch triggers`; prefixes
their output with their role, restarts any that die, and on Ctrl-C (or SIGTERM) stops them in order
(triggers, api, engine, workers, Redis). Children die with it even if it
is killed outright (PR_SET_PDEATHSIG), and a Redis left by a crashed run is stopped on the next start.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click

from ..connection import check_server, client_from_url, redact_url, resolve_redis_url
from ..embedded_redis import EmbeddedRedis, start_embedded_redis
from ..errors import OrchestratorError
from ..jsonutil import dumps, loads
from ..project import Project
from ..settings import Settings
from .api_cmd import check_auth_mode
from .devtoken import dev_token, token_file
from .wiring import load_project

__all__ = ["run_dev"]

_COLORS = {"api": "cyan", "engine": "magenta", "worker": "yellow", "triggers": "blue"}
_STOP_TIMEOUT_S = 15.0


@dataclass
class Child:
    role: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0


def _step(message: str) -> None:
    click.echo(click.style("orch dev", bold=True) + f"  {message}")


def run_dev(settings: Settings, *, workers: int) -> int:
    """Run until interrupted; returns the exit code."""
    project = load_project(settings.project_dir, watch_roots=settings.watch_roots)
    from triggers.webhooks import resolve_all

    resolve_all(project.hooks, os.environ, project_root=project.root)  # a missing secret: say so now, not in a loop
    _step(f"project {settings.project_dir}: {len(project.rules)} rules, {len(project.workflows)} workflows, "
          f"{len(project.tasks)} tasks, {len(project.schedules)} schedules, {len(project.hooks)} webhooks, "
          f"{len(project.watches)} watches")
    check_auth_mode(settings)
    _check_port_free(settings.api_host, settings.api_port)
    embedded, url = _redis(settings)
    token = (dev_token(settings, resolve_redis_url(settings) if settings.redis_url else url)
             if settings.api_auth == "token" else None)
    children = [Child("api", _argv("api")), Child("engine", _argv("engine"))]
    children.append(Child("worker", [*_argv("worker"), "--concurrency", str(workers)]))  # a supervised pool
    if project.schedules or project.watches:
        children.append(Child("triggers", _argv("triggers")))
    env = {**os.environ, "ORCH_REDIS_URL": url, "ORCH_PROJECT": str(settings.project_dir),
           "ORCH_API_HOST": settings.api_host, "ORCH_API_PORT": str(settings.api_port),
           "ORCH_DEV_PARENT_PID": str(os.getpid()), "ORCH_DEV_ROOT_PID": str(os.getpid()),  # cli.common
           "PYTHONUNBUFFERED": "1", "ORCH_HEALTH_PORT": "0"}
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for child in children:
            _start(child, env)
        if _wait_healthy(settings, children, stop):
            _banner(settings, url, embedded, project, workers, token)
        _supervise(children, env, stop)
    finally:
        _step("stopping...")
        _stop_all(children)
        if embedded is not None:
            embedded.stop()
        _step("stopped")
    return 0


def _argv(role: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", role]


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise OrchestratorError(f"port {port} on {host} is already in use: stop what uses it, "
                                    f"or pass --port (or set ORCH_API_PORT)") from None


def _redis(settings: Settings) -> tuple[EmbeddedRedis | None, str]:
    if settings.redis_url:
        client = client_from_url(resolve_redis_url(settings))  # with ORCH_REDIS_PASSWORD_FILE's password
        version = ".".join(map(str, check_server(client, settings.redis_url)))
        client.close()
        _step(f"using Redis {version} at {redact_url(settings.redis_url)} (ORCH_REDIS_URL)")
        return None, settings.redis_url
    _step("starting an embedded Redis...")
    embedded = start_embedded_redis(settings.state_dir)
    _step(f"Redis {embedded.version} ({embedded.binary}, from {embedded.origin}) at {redact_url(embedded.url)}, "
          f"data in {embedded.data_dir}")
    return embedded, embedded.url


def _start(child: Child, env: dict[str, str]) -> None:
    child.process = subprocess.Popen(child.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
    child.started_at = time.monotonic()
    stream = child.process.stdout
    if stream is not None:
        threading.Thread(target=_pump, args=(child.role, stream), daemon=True).start()


def _pump(role: str, stream: IO[bytes]) -> None:
    color = _COLORS.get(role.split("-")[0], "white")
    prefix = click.style(f"{role:<9}|", fg=color)
    for raw in iter(stream.readline, b""):
        click.echo(f"{prefix} {raw.decode(errors='replace').rstrip()}")
    stream.close()


def _wait_healthy(settings: Settings, children: list[Child], stop: threading.Event) -> bool:
    import urllib.request

    url = f"http://{_client_host(settings.api_host)}:{settings.api_port}/healthz"
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        for child in children:
            if child.process is not None and child.process.poll() is not None:
                _step(f"{child.role} exited with code {child.process.returncode} while starting")
                return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return True
        except OSError:
            stop.wait(0.1)
    return False


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)


def _supervise(children: list[Child], env: dict[str, str], stop: threading.Event) -> None:
    while not stop.is_set():
        now = time.monotonic()
        for child in children:
            process = child.process
            if process is not None and process.poll() is not None:
                delay = min(30.0, 2.0 ** min(child.restarts, 5)) if now - child.started_at < 10 else 1.0
                _step(f"{child.role} exited with code {process.returncode}; restarting in {delay:.0f}s")
                child.process, child.next_start = None, now + delay
                child.restarts += 1
            elif process is None and now >= child.next_start:
                _start(child, env)
        stop.wait(0.2)


def _stop_all(children: list[Child]) -> None:
    for role in ("triggers", "api", "engine", "worker"):
        running = [(c.role, c.process) for c in children
                   if c.role.split("-")[0] == role and c.process is not None and c.process.poll() is None]
        for _, process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for name, process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _step(f"{name} did not stop in {_STOP_TIMEOUT_S:.0f}s; killing it")
                process.kill()
                process.wait()


def _orch_command() -> str:
    here = Path(sys.executable).parent / "orch"
    on_path = shutil.which("orch")
    if on_path and Path(on_path).resolve() == here.resolve():
        return "orch"
    try:
        return str(here.relative_to(Path.cwd()))
    except ValueError:
        return str(here)


def _project_arg(settings: Settings) -> str:
    try:
        return str(settings.project_dir.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(settings.project_dir)


def _sample(project: Project) -> dict[str, Any] | None:
    folder = project.root / "events"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            sample = loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(sample, dict) and isinstance(sample.get("type"), str):
            return sample
    return None


def _token_lines(settings: Settings, token: str | None) -> tuple[list[str], str]:
    """The banner's lines about the API token, and the curl header that sends it."""
    if token is None:
        return ["  API auth   none (ORCH_API_AUTH=none, loopback only)"], ""
    path = shlex.quote(_relative(token_file(settings)))
    return ([f"  API token  {token}", f"             admin scope; kept in {path} (mode 0600), reused next time"],
            f" -H \"Authorization: Bearer $(cat {path})\"")


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _banner(settings: Settings, url: str, embedded: EmbeddedRedis | None, project: Project, workers: int,
            token: str | None) -> None:
    api = f"http://{_client_host(settings.api_host)}:{settings.api_port}"
    orch, proj = _orch_command(), shlex.quote(_project_arg(settings))
    sample = _sample(project) or {"type": project.rules[0].types[0] if project.rules else "example.event",
                                  "source": "/demo", "data": {}}
    data = dumps(sample.get("data", {})).decode()
    source = str(sample.get("source", "/demo"))
    token_lines, auth = _token_lines(settings, token)
    lines = [
        "",
        click.style("orch is running", bold=True, fg="green") + f" ({workers} worker process(es)); Ctrl-C stops everything",
        f"  UI         {api}/ui/   (sign in with the API token below)",
        f"  API        {api}",
        *token_lines,
        f"  health     {api}/healthz",
        f"  metrics    {api}/metrics",
        f"  runs       {api}/runs",
        f"  Redis      {redact_url(url)}" + ("  (embedded, password in .orch/; other orch commands with --project "
                                             "find it)" if embedded else ""),
        "",
        "Trigger the example workflow, from another terminal:",
        f"  {orch} emit {shlex.quote(sample['type'])} --project {proj} --source {shlex.quote(source)} "
        f"--data {shlex.quote(data)}",
        f"  curl -i -X POST {api}/events{auth} -H 'Content-Type: application/json' -H 'ce-specversion: 1.0' "
        f"-H {shlex.quote('ce-type: ' + sample['type'])} -H {shlex.quote('ce-source: ' + source)} "
        f"-H \"ce-id: demo-$(date +%s%N)\" -d {shlex.quote(data)}",
        "Then look at the runs:",
        f"  {orch} runs list --project {proj}",
        f"  {orch} runs show RUN_ID --project {proj}",
        f"  curl -s {api}/runs{auth}",
        "",
    ]
    click.echo("\n".join(lines))
