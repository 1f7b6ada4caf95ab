"""The processes a bench run owns (its redis-server and every `orch` process it starts), stopped whatever
happens, and the Redis accounting (INFO commandstats deltas) the phases report their costs with.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import redis

from bench.common import ORCH, PREFIX, PROJECT, ROOT, BenchError, free_port
from orchestrator.embedded_redis import find_redis_binary

# -- processes ---------------------------------------------------------------------------------------


def _die_with_parent() -> None:  # runs in the child between fork and exec: dies if we are killed
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Stack:
    """Our redis-server and orch processes; `close()` stops every one of them, whatever happened."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="orch-bench-"))
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.redis_version = ""
        self.orch: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.profile_dir: Path | None = None  # set: run the orch processes under cProfile, .prof files here
        self.tag = ""  # prefix of the log and profile file names (the worker engine being measured)
        self.started = 0

    def start_redis(self) -> str:
        binary, _ = find_redis_binary()
        for _ in range(5):
            port = free_port()
            self.redis_proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes", "--save", "",
                 "--appendonly", "no", "--dir", str(self.tmp), "--logfile", "redis.log", "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent)
            self.url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
            for _ in range(200):
                if self.redis_proc.poll() is not None:
                    break
                try:
                    self.redis_version = str(client.info("server")["redis_version"])
                    client.close()
                    return self.url
                except redis.ConnectionError:
                    time.sleep(0.05)
            self._stop_redis()
        raise BenchError(f"could not start {binary}; see {self.tmp / 'redis.log'}")

    def start_orch(self, role: str, *args: str, log_level: str | None = None,
                   env_overrides: dict[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "ORCH_DEV_PARENT_PID"}
        env.update(ORCH_REDIS_URL=self.url, ORCH_PROJECT=str(PROJECT), ORCH_KEY_PREFIX=PREFIX,
                   PYTHONUNBUFFERED="1")
        env.update(env_overrides or {})
        if log_level:
            env["ORCH_LOG_LEVEL"] = log_level
        name = f"{self.tag}{role}-{self.started}"
        self.started += 1
        logfile = self.tmp / f"{name}.log"
        command = [str(ORCH), role, *args]
        if self.profile_dir is not None:
            out_file = self.profile_dir / f"{name}.prof"
            command = [sys.executable, "-m", "cProfile", "-o", str(out_file), "-m", "orchestrator", role, *args]
        with logfile.open("wb") as out:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)
        self.orch.append((role, proc, logfile))

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) so far of redis-server, the engine, the workers (a pool's included) and
        this process; `machine`: the busy time of every CPU, whoever used it (to see other load)."""
        pids = [("bench", os.getpid())] + [(role, proc.pid) for role, proc, _ in self.orch]
        if self.redis_proc is not None:
            pids.append(("redis", self.redis_proc.pid))
        out: dict[str, float] = {}
        for role, pid in pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                family = [proc] + (proc.children(recursive=True) if role != "bench" else [])  # a pool's workers
                for member in family:
                    with contextlib.suppress(psutil.Error):
                        times = member.cpu_times()
                        out[role] = out.get(role, 0.0) + times.user + times.system
        machine = psutil.cpu_times()
        out["machine"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0) - getattr(machine, "guest", 0.0) \
            - getattr(machine, "guest_nice", 0.0)
        return out

    def check_alive(self) -> None:
        for role, proc, logfile in self.orch:
            if proc.poll() is not None:
                tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-15:])
                raise BenchError(f"orch {role} (pid {proc.pid}) exited with code {proc.returncode}:\n{tail}")
        if self.redis_proc is not None and self.redis_proc.poll() is not None:
            raise BenchError(f"redis-server exited with code {self.redis_proc.returncode}")

    def stop_orch(self, timeout_s: float = 10.0) -> None:
        for _, proc, _ in self.orch:
            signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for _, proc, _ in self.orch:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(proc, signal.SIGKILL)
                proc.wait()
        self.orch.clear()

    def _stop_redis(self) -> None:
        if self.redis_proc is not None:
            if self.redis_proc.poll() is None:
                self.redis_proc.kill()
            self.redis_proc.wait()
            self.redis_proc = None

    def close(self, keep_logs: bool = False) -> None:
        try:
            self.stop_orch()
        finally:
            self._stop_redis()
            if not keep_logs:
                shutil.rmtree(self.tmp, ignore_errors=True)


def signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # started with start_new_session: its group id is its pid


# -- Redis accounting ----------------------------------------------------------------------------------


def stats(client: redis.Redis) -> dict[str, Any]:
    info = client.execute_command("INFO", "memory", "stats", "commandstats")
    return {"used_memory": int(info["used_memory"]), "commands": int(info["total_commands_processed"]),
            "reads": int(info["total_reads_processed"]),  # socket reads: round trips, a pipeline being one
            "by_command": {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()
                           if k.startswith("cmdstat_")},
            "usec_by_command": {k.removeprefix("cmdstat_"): int(v["usec"]) for k, v in info.items()
                                if k.startswith("cmdstat_")}}


def usec_per(before: dict[str, Any], after: dict[str, Any], n: int, top: int = 6) -> dict[str, float]:
    """Redis server time (INFO commandstats usec) per task, by command, the largest first."""
    delta = {name: usec - before["usec_by_command"].get(name, 0) for name, usec in after["usec_by_command"].items()}
    ranked = sorted(((k, v) for k, v in delta.items() if v > 0), key=lambda kv: -kv[1])[:top]
    return {name: round(usec / n, 2) for name, usec in ranked}


def commands_between(before: dict[str, Any], after: dict[str, Any], own: dict[str, int]) -> dict[str, int]:
    """Commands per name between two `stats` snapshots, less our own (the first INFO, polls)."""
    own = {"info": 1, **own}
    delta = {}
    for name, calls in after["by_command"].items():
        n = calls - before["by_command"].get(name, 0) - own.get(name, 0)
        if n > 0:
            delta[name] = n
    return delta


def per(delta: dict[str, int], n: int, top: int = 12) -> dict[str, float]:
    ranked = sorted(delta.items(), key=lambda kv: -kv[1])[:top]
    return {name: round(calls / n, 3) for name, calls in ranked}
