"""orch benchmarks, side by side with peers measured in the same run (`make bench`).

    .venv/bin/python bench/run.py                 full run (about a minute on 2 cores)
    .venv/bin/python bench/run.py --quick         short smoke run (~15 s)
    .venv/bin/python bench/run.py --json          JSON on stdout (the table goes to stderr)
    .venv/bin/python bench/run.py --skip-peers    orch only
    .venv/bin/python bench/run.py --peers all     RQ (simple and fork), Celery and Dramatiq
    .venv/bin/python bench/run.py --profile       engine and workers under cProfile (slower; for where time goes)
    .venv/bin/python bench/run.py --only webhook  the webhook phase alone (~10 s)

Everything runs against a redis-server started here on a free loopback port, in a temporary
directory, without persistence (like the peers), and stopped at the end: no other Redis is touched.
Phases, in order:

  1. ingest      `Client.emit_many` in calls of --chunk events, no engine running: events/s, Redis
                 memory per retained event (INFO used_memory delta: stream entry + dedup key), Redis
                 commands per event, CPU per event of the client and of redis-server.
  1b. webhook    `orch api` alone, one `verify: github` endpoint: --hook-requests signed requests
                 (distinct bodies) over --hook-connections keep-alive connections from a
                 minimal asyncio client; requests/s answered 202 (each event in the stream), latency
                 p50/p99, API CPU per request. Its keys use their own prefix and are dropped after.
  2. idle        `orch engine` + 2 `orch worker` on bench/project; one event at a time, each run
                 finished before the next: emit -> task started p50/p99 (the task's started_at from
                 its run), emit -> run succeeded, and where the time goes between the two.
  3. sustained   N events emitted at once; one-task workflows/s from the first emit until the last
                 run succeeded (ZCARD of the succeeded index, polled every 2 ms); Redis commands per
                 run; CPU of each process.
  4. peers       ../shared/peers/run.sh (RQ SimpleWorker by default; ORCH_BENCH_PEERS to use
                 another script), same N, for the ratios.

Redis commands are counted from INFO commandstats, commands run inside Lua scripts included, this
script's own polling excluded. Percentiles use the peers' definition (sorted[int(n * q)]). Results
are printed as a Markdown table and saved to bench/results/<timestamp>.json. ORCH_* variables in
the environment reach the engine and workers (handy for tuning), except those this script sets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import hmac
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import redis

from orchestrator import Client, Event, Settings
from orchestrator.embedded_redis import find_redis_binary
from orchestrator.jsonutil import dumps
from orchestrator.state.keys import Keys
from orchestrator.state.store import RunStore
from orchestrator.workflows.runs import Run, RunStatus, derive_run_id

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "bench" / "project"
RESULTS = ROOT / "bench" / "results"
ORCH = Path(sys.executable).parent / "orch"
PEERS = Path(os.environ.get("ORCH_BENCH_PEERS", ROOT.parent / "shared" / "peers" / "run.sh"))
ALL_PEERS = "rq-simple,rq-fork,celery,dramatiq"

RULE = "bench-noop"          # bench/project/rules/bench.yaml
EVENT_TYPE = "bench.noop"
TASK_NODE = "noop"
SOURCE = "/bench"
PREFIX = "orch"              # the default key prefix, so keys read as documented in state/keys.py
INGEST_PREFIX = "bench-ingest"
POLL_S = 0.002               # the peers poll their done counter every 2 ms too

FULL = {"events": 100_000, "samples": 200, "n": 2000, "hook_requests": 20_000}
QUICK = {"events": 10_000, "samples": 30, "n": 300, "hook_requests": 3000}
HOOK_PREFIX = "bench-hooks"  # the webhook phase's keys, dropped after it
HOOK_SECRET_ENV = "ORCH_BENCH_WEBHOOK_SECRET"


class BenchError(RuntimeError):
    """A phase could not complete; the message says why."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    """The peers' percentile: sorted(values)[int(n * q)], clamped."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec: dies if we are killed
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# -- processes ---------------------------------------------------------------------------------------


class Stack:
    """Our redis-server and orch processes; `close()` stops every one of them, whatever happened."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="orch-bench-"))
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.redis_version = ""
        self.orch: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.profile_dir: Path | None = None  # set: run the orch processes under cProfile, .prof files here

    def start_redis(self) -> str:
        binary, _ = find_redis_binary()
        for _ in range(5):
            port = _free_port()
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
        logfile = self.tmp / f"{role}-{len(self.orch)}.log"
        command = [str(ORCH), role, *args]
        if self.profile_dir is not None:
            out_file = self.profile_dir / f"{role}-{len(self.orch)}.prof"
            command = [sys.executable, "-m", "cProfile", "-o", str(out_file), "-m", "orchestrator", role, *args]
        with logfile.open("wb") as out:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)
        self.orch.append((role, proc, logfile))

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) so far of redis-server, the engine, the workers and this process."""
        pids = [("bench", os.getpid())] + [(role, proc.pid) for role, proc, _ in self.orch]
        if self.redis_proc is not None:
            pids.append(("redis", self.redis_proc.pid))
        out: dict[str, float] = {}
        for role, pid in pids:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                out[role] = out.get(role, 0.0) + times.user + times.system
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
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for _, proc, _ in self.orch:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
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


def _signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # started with start_new_session: its group id is its pid


# -- Redis accounting ----------------------------------------------------------------------------------


def stats(client: redis.Redis) -> dict[str, Any]:
    info = client.execute_command("INFO", "memory", "stats", "commandstats")
    return {"used_memory": int(info["used_memory"]), "commands": int(info["total_commands_processed"]),
            "by_command": {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()
                           if k.startswith("cmdstat_")}}


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


# -- phase 1: ingest -----------------------------------------------------------------------------------


def _drop_prefix(client: redis.Redis, prefix: str) -> None:
    for key in client.scan_iter(match=f"{prefix}:*", count=5000):
        client.unlink(key)


def phase_ingest(stack: Stack, events: int, chunk: int) -> dict[str, Any]:
    admin = redis.Redis.from_url(stack.url)
    settings = Settings(redis_url=stack.url, key_prefix=INGEST_PREFIX)
    with Client(settings=settings, source=SOURCE) as client:
        client.emit_many([{"type": EVENT_TYPE, "data": {"n": -1}}])  # loads the script, opens the pool
        _drop_prefix(admin, INGEST_PREFIX)
        before, cpu_before = stats(admin), stack.cpu_seconds()
        log(f"ingest: {events:,} events via Client.emit_many, {chunk:,} per call, no engine running")
        t0 = time.perf_counter()
        next_report = t0 + 1.0
        done = 0
        while done < events:
            size = min(chunk, events - done)
            client.emit_many([{"type": EVENT_TYPE, "data": {"n": i}} for i in range(done, done + size)])
            done += size
            if time.perf_counter() >= next_report or done == events:
                log(f"ingest: {done:,}/{events:,} events")
                next_report = time.perf_counter() + 1.0
        elapsed = time.perf_counter() - t0
    after, cpu_after = stats(admin), stack.cpu_seconds()
    delta = commands_between(before, after, {})
    retained = admin.xlen(Keys(INGEST_PREFIX).events)
    stream_bytes = int(admin.memory_usage(Keys(INGEST_PREFIX).events, samples=0) or 0)
    _drop_prefix(admin, INGEST_PREFIX)  # our own server: the engine must never see these events
    admin.close()
    event_bytes = len(dumps(Event.new(EVENT_TYPE, {"n": 12345}, source=SOURCE).to_dict()))
    if retained < events:
        raise BenchError(f"ingest: only {retained:,} of {events:,} events are in the stream")
    return {"events": events, "chunk": chunk, "seconds": round(elapsed, 3),
            "events_per_s": round(events / elapsed, 1),
            "memory_bytes_per_event": round((after["used_memory"] - before["used_memory"]) / events, 1),
            "memory_bytes_per_event_stream_entry": round(stream_bytes / events, 1),
            "cpu_us_per_event": {role: round((cpu_after[role] - cpu_before.get(role, 0.0)) * 1e6 / events, 1)
                                 for role in ("bench", "redis")},
            "commands_per_event": round(sum(delta.values()) / events, 3),
            "commands_per_event_by_command": per(delta, events),
            "event_json_bytes": event_bytes}


# -- phase 1b: webhooks ----------------------------------------------------------------------------------


def _hook_request(port: int, body: bytes, secret: bytes) -> bytes:
    """One signed GitHub-style request, as raw HTTP/1.1 bytes (keep-alive)."""
    signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
    head = (f"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: {uuid.uuid4()}\r\n"
            f"X-Hub-Signature-256: sha256={signature}\r\n\r\n")
    return head.encode() + body


async def _hook_load(port: int, requests: list[bytes], connections: int) -> tuple[list[float], list[int]]:
    """Send `requests` over `connections` keep-alive connections; (latencies in ms, status codes)."""
    latencies: list[float] = []
    statuses: list[int] = []
    queue = iter(requests)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for raw in queue:
                t0 = time.perf_counter()
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses.append(int(head.split(b" ", 2)[1]))
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return latencies, statuses


def phase_webhook(stack: Stack, requests: int, connections: int = 16) -> dict[str, Any]:
    """`orch api` alone with one github-verified endpoint: signed requests/s until each is in the stream."""
    project = stack.tmp / "hooks-project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns(".orch", "__pycache__"))
    (project / "rules" / "hooks.yaml").write_text(
        f"hooks:\n  - {{name: github, verify: github, secret_env: {HOOK_SECRET_ENV}}}\n")
    secret = uuid.uuid4().hex
    port = _free_port()
    stack.start_orch("api", env_overrides={"ORCH_PROJECT": str(project), "ORCH_KEY_PREFIX": HOOK_PREFIX,
                                           "ORCH_API_PORT": str(port), HOOK_SECRET_ENV: secret})
    deadline = time.monotonic() + 60
    while True:
        stack.check_alive()
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        if time.monotonic() > deadline:
            raise BenchError(f"webhook: orch api did not listen within 60 s (logs: {stack.tmp})")
        time.sleep(0.05)
    payload = {"ref": "refs/heads/main", "repository": {"full_name": "acme/app", "id": 1},
               "pusher": {"name": "octocat"}, "commits": [{"id": uuid.uuid4().hex, "message": "x" * 200}] * 4}
    body = dumps(payload)  # each request gets its own `after` commit: events are deduplicated by body

    def signed() -> bytes:
        return _hook_request(port, dumps({**payload, "after": uuid.uuid4().hex}), secret.encode())

    warm = [signed() for _ in range(300)]
    timed = [signed() for _ in range(requests)]
    log(f"webhook: {requests:,} signed github-style requests ({len(body)} B bodies) over {connections} "
        "keep-alive connections to `orch api`")
    asyncio.run(_hook_load(port, warm, connections))
    api_pid = stack.orch[-1][1].pid
    cpu_before = psutil.Process(api_pid).cpu_times()
    t0 = time.perf_counter()
    latencies, statuses = asyncio.run(_hook_load(port, timed, connections))
    elapsed = time.perf_counter() - t0
    cpu_after = psutil.Process(api_pid).cpu_times()
    admin = redis.Redis.from_url(stack.url)
    in_stream = admin.xlen(Keys(HOOK_PREFIX).events)
    _drop_prefix(admin, HOOK_PREFIX)
    admin.close()
    stack.stop_orch()
    bad = [code for code in statuses if code != 202]
    if bad or in_stream != requests + len(warm):
        raise BenchError(f"webhook: {len(bad)} non-202 answers ({sorted(set(bad))}); "
                         f"{in_stream:,} of {requests + len(warm):,} events in the stream")
    api_cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    log(f"webhook: {requests / elapsed:,.0f} requests/s")
    return {"requests": requests, "connections": connections, "body_bytes": len(body),
            "seconds": round(elapsed, 3), "requests_per_s": round(requests / elapsed, 1),
            "latency_ms_p50": round(pct(latencies, 0.5), 3), "latency_ms_p99": round(pct(latencies, 0.99), 3),
            "api_cpu_cores_busy": round(api_cpu / elapsed, 2),
            "api_cpu_us_per_request": round(api_cpu * 1e6 / requests, 1)}


# -- phases 2 and 3: engine and workers ----------------------------------------------------------------


class Probe:
    """Reads run state on its own connection and counts its commands, which are not the product's cost."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url)
        self.keys = Keys(PREFIX)
        self.store = RunStore(self.redis, self.keys, retention_s=86400)
        self.own: dict[str, int] = {}
        self._succeeded = self.keys.runs_by_status(RunStatus.SUCCEEDED)
        self._failed = self.keys.runs_by_status(RunStatus.FAILED)

    def _count(self, name: str, n: int = 1) -> None:
        self.own[name] = self.own.get(name, 0) + n

    def counts(self) -> tuple[int, int]:
        """(succeeded, failed) runs: two ZCARDs in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self._succeeded)
        pipe.zcard(self._failed)
        self._count("zcard", 2)
        succeeded, failed = pipe.execute()
        return int(succeeded), int(failed)

    def outcome(self, run_id: str) -> str | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zscore(self._succeeded, run_id)
        pipe.zscore(self._failed, run_id)
        self._count("zscore", 2)
        succeeded, failed = pipe.execute()
        return RunStatus.SUCCEEDED if succeeded is not None else RunStatus.FAILED if failed is not None else None

    def run(self, run_id: str) -> Run:
        found = self.store.get(run_id)
        self._count("hgetall")
        if found is None:
            raise BenchError(f"run {run_id} finished but cannot be read")
        return found

    def workers(self) -> int:
        self._count("scard")
        return int(self.redis.scard("rq:workers"))


def emit_one(client: Client, n: int) -> tuple[str, float]:
    """Emit one event; (its run id, the emit time in epoch seconds)."""
    event_id = uuid.uuid4().hex
    t = time.time()
    client.emit(EVENT_TYPE, {"n": n}, id=event_id)
    return derive_run_id(RULE, SOURCE, event_id), t


def wait_run(stack: Stack, probe: Probe, run_id: str, timeout_s: float) -> Run:
    deadline = time.monotonic() + timeout_s
    next_check = time.monotonic() + 0.5
    while (status := probe.outcome(run_id)) is None:
        now = time.monotonic()
        if now >= next_check:
            stack.check_alive()
            next_check = now + 0.5
        if now > deadline:
            raise BenchError(f"run {run_id} did not finish within {timeout_s:.0f}s (logs: {stack.tmp})")
        time.sleep(POLL_S)
    run = probe.run(run_id)
    if status != RunStatus.SUCCEEDED:
        raise BenchError(f"run {run_id} {status}: {run.error}")
    return run


def start_orch(stack: Stack, workers: int, log_level: str | None, probe: Probe, client: Client) -> None:
    log(f"idle: starting `orch engine` and {workers} `orch worker` on {PROJECT.relative_to(ROOT)}")
    stack.start_orch("engine", log_level=log_level)
    for _ in range(workers):
        stack.start_orch("worker", log_level=log_level)
    run_id, _ = emit_one(client, -1)
    wait_run(stack, probe, run_id, 90)
    deadline = time.monotonic() + 30
    while probe.workers() < workers:
        stack.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"only {probe.workers()} of {workers} workers registered (logs: {stack.tmp})")
        time.sleep(0.05)
    for i in range(10):  # every worker has run a job, every code path is warm
        wait_run(stack, probe, emit_one(client, -2 - i)[0], 30)


def phase_idle(stack: Stack, probe: Probe, client: Client, samples: int) -> dict[str, Any]:
    series: dict[str, list[float]] = {"start": [], "succeeded": [], "created": [], "dispatch": [], "finish": []}
    for i in range(samples):
        run_id, t = emit_one(client, i)
        run = wait_run(stack, probe, run_id, 30)
        task = run.tasks[TASK_NODE]
        if task.started_at is None or run.finished_at is None:
            raise BenchError(f"run {run_id}: no start or finish time recorded")
        started, created, finished = task.started_at.timestamp(), run.created_at.timestamp(), run.finished_at.timestamp()
        series["start"].append((started - t) * 1000)        # emit -> task started (worker clock)
        series["succeeded"].append((finished - t) * 1000)   # emit -> run succeeded (engine clock)
        series["created"].append((created - t) * 1000)      # emit -> run created and task queued (engine)
        series["dispatch"].append((started - created) * 1000)   # queued -> a worker started the task
        series["finish"].append((finished - started) * 1000)    # started -> the engine finished the run
        if (i + 1) % 50 == 0 or i + 1 == samples:
            log(f"idle: {i + 1}/{samples} samples, emit -> task start p50 {pct(series['start'], 0.5):.2f} ms")
    out: dict[str, Any] = {"samples": samples}
    for name, values in series.items():
        out[f"{name}_ms_p50"] = round(pct(values, 0.5), 3)
        out[f"{name}_ms_p99"] = round(pct(values, 0.99), 3)
    out["start_ms_max"] = round(max(series["start"]), 3)
    return out


def background_rate(admin: redis.Redis, seconds: float = 2.0) -> float:
    """Commands/s the idle engine and workers send (polling, heartbeats): the noise under phase 3."""
    before = stats(admin)
    time.sleep(seconds)
    after = stats(admin)
    return round(sum(commands_between(before, after, {}).values()) / seconds, 1)


def phase_sustained(stack: Stack, probe: Probe, client: Client, admin: redis.Redis, n: int) -> dict[str, Any]:
    base_ok, base_failed = probe.counts()
    events = [{"type": EVENT_TYPE, "data": {"n": i}} for i in range(n)]
    log(f"sustained: emitting {n:,} events at once, then waiting for {n:,} runs to succeed")
    probe.own.clear()
    before, cpu_before = stats(admin), stack.cpu_seconds()
    t0 = time.time()
    event_ids = client.emit_many(events)
    emit_s = time.time() - t0
    done = last_done = 0
    last_change = next_report = time.monotonic()
    while done < n:
        succeeded, failed = probe.counts()
        done = succeeded - base_ok
        if failed > base_failed:
            raise BenchError(f"sustained: {failed - base_failed} runs failed (logs: {stack.tmp})")
        now = time.monotonic()
        if done != last_done:
            last_done, last_change = done, now
        elif now - last_change > 60:
            raise BenchError(f"sustained: stalled at {done:,}/{n:,} runs for 60s (logs: {stack.tmp})")
        if now >= next_report:
            log(f"sustained: {done:,}/{n:,} runs succeeded")
            stack.check_alive()
            next_report = now + 1.0
        if done < n:
            time.sleep(POLL_S)
    elapsed = time.time() - t0
    after, cpu_after = stats(admin), stack.cpu_seconds()
    log(f"sustained: {n:,}/{n:,} runs succeeded in {elapsed:.2f}s")
    cpu = {role: cpu_after[role] - cpu_before.get(role, 0.0) for role in cpu_after}
    delta = commands_between(before, after, probe.own)
    last_finish = _last_finish(probe, event_ids)
    return {"runs": n, "seconds": round(elapsed, 3), "emit_seconds": round(emit_s, 3),
            "runs_per_s": round(n / elapsed, 1),
            "runs_per_s_by_last_finished_at": round(n / max(1e-6, last_finish - t0), 1),
            "commands_per_run": round(sum(delta.values()) / n, 2),
            "commands_per_run_by_command": per(delta, n),
            "cpu_cores_busy": {role: round(sec / elapsed, 2) for role, sec in cpu.items()},
            "cpu_ms_per_run": {role: round(sec * 1000 / n, 3) for role, sec in cpu.items()}}


def _last_finish(probe: Probe, event_ids: list[str]) -> float:
    """The latest `finished_at` among the phase's runs (engine clock), read after the measurement."""
    pipe = probe.redis.pipeline(transaction=False)
    for event_id in event_ids:
        pipe.hget(probe.keys.run(derive_run_id(RULE, SOURCE, event_id)), "meta")
    latest = 0.0
    for raw in pipe.execute():
        meta = json.loads(raw)
        latest = max(latest, datetime.fromisoformat(meta["finished_at"]).timestamp())
    return latest


def phase_orch(stack: Stack, args: argparse.Namespace, sizes: dict[str, int]) -> dict[str, Any]:
    admin = redis.Redis.from_url(stack.url)
    probe = Probe(stack.url)
    with Client(settings=Settings(redis_url=stack.url, key_prefix=PREFIX), source=SOURCE) as client:
        start_orch(stack, args.workers, args.log_level, probe, client)
        log(f"idle: {sizes['samples']} events one at a time, each run finished before the next")
        idle = phase_idle(stack, probe, client, sizes["samples"])
        background = background_rate(admin)
        sustained = phase_sustained(stack, probe, client, admin, sizes["n"])
        sustained["background_commands_per_s"] = background
    probe.redis.close()
    admin.close()
    return {"idle": idle, "sustained": sustained}


# -- phase 4: peers ------------------------------------------------------------------------------------


def run_peers(only: str, n: int, tmp: Path, limit_s: float = 3600) -> list[dict[str, Any]]:
    if not PEERS.exists():
        raise BenchError(f"peers: {PEERS} not found")
    log(f"peers: {PEERS} --only {only} --n {n} (builds its venv in /tmp the first time)")
    out_path, err_path = tmp / "peers.out", tmp / "peers.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen([str(PEERS), "--only", only, "--json", "--n", str(n)], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
    t0 = time.monotonic()
    try:
        while True:
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - t0
                log(f"peers: measuring {only}: {elapsed:.0f} s")
                if elapsed > limit_s:
                    raise BenchError(f"peers: no result after {limit_s:.0f} s") from None
    finally:
        if proc.poll() is None:
            _stop_tree(proc)
    lines = out_path.read_text(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise BenchError(f"peers: exit code {proc.returncode}: {' | '.join(tail)}")
    rows: list[dict[str, Any]] = json.loads(lines[-1])
    for row in rows:
        if "error" in row:
            log(f"peers: {row['peer']}: {row['error']}")
    return rows


def _stop_tree(proc: subprocess.Popen[Any]) -> None:
    """Stop the peers script: SIGINT lets it stop its workers and Redis; then kill what is left."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    _signal_group(proc, signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    for child in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


# -- report --------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return "–"
    return f"{ours / theirs:.2f}x"


def _peer(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    rows: list[dict[str, Any]] = results.get("peers") or []
    return next((row for row in rows if row.get("peer") == name and "error" not in row), None)


def _target(ok: bool | None, text: str) -> str:
    return text if ok is None else f"{text}: {'met' if ok else 'NOT met'}"


def _webhook_row(hook: dict[str, Any]) -> tuple[str, str, str, str, str]:
    return (f"webhook, signed github-style POST /hooks/{{name}} to 202 ({hook['connections']} connections; requests/s)",
            _num(hook["requests_per_s"]), "–", "–", "reported")


def _webhook_note(hook: dict[str, Any]) -> str:
    return (f"Webhook: {hook['requests']:,} requests of {hook['body_bytes']} B, latency p50 / p99 "
            f"{hook['latency_ms_p50']:.2f} / {hook['latency_ms_p99']:.2f} ms; `orch api` CPU "
            f"{hook['api_cpu_cores_busy']:.2f} cores busy, {hook['api_cpu_us_per_request']:.0f} us per request "
            "(verify, parse, publish script).")


def table(results: dict[str, Any]) -> str:
    orch, sizes = results["orch"], results["sizes"]
    if "ingest" not in orch:  # --only webhook
        hook = orch["webhook"]
        return "\n".join(["| metric | orch | RQ SimpleWorker | orch / RQ | target |", "|---|---:|---:|---:|---|",
                          f"| {' | '.join(_webhook_row(hook))} |", "", _webhook_note(hook)])
    ingest, idle, sus = orch["ingest"], orch["idle"], orch["sustained"]
    rq = _peer(results, "rq-simple") or {}
    dramatiq = _peer(results, "dramatiq")
    rq_tps, rq_p50, rq_p99 = rq.get("tasks_per_s"), rq.get("idle_latency_ms_p50"), rq.get("idle_latency_ms_p99")
    e2e_target = (_target(sus["runs_per_s"] >= dramatiq["tasks_per_s"], f">= Dramatiq ({dramatiq['tasks_per_s']:,.0f}/s)")
                  if dramatiq and dramatiq.get("tasks_per_s") else ">= Dramatiq's tasks/s (`--peers all`)")
    rows = [
        (f"end-to-end one-task workflows/s ({sizes['n']:,} events at once; RQ: tasks/s)",
         _num(sus["runs_per_s"]), _num(rq_tps), _ratio(sus["runs_per_s"], rq_tps), e2e_target),
        ("idle latency p50, emit -> task start (ms)", _num(idle["start_ms_p50"], 2), _num(rq_p50, 2),
         _ratio(idle["start_ms_p50"], rq_p50), _target(idle["start_ms_p50"] <= 3, "<= 3 ms")),
        ("idle latency p99, emit -> task start (ms)", _num(idle["start_ms_p99"], 2), _num(rq_p99, 2),
         _ratio(idle["start_ms_p99"], rq_p99), _target(idle["start_ms_p99"] <= 10, "<= 10 ms")),
        ("idle emit -> run succeeded, p50 / p99 (ms)",
         f"{_num(idle['succeeded_ms_p50'], 2)} / {_num(idle['succeeded_ms_p99'], 2)}", "–", "–", "–"),
        (f"ingest, Client.emit_many, {ingest['chunk']:,}/call (events/s)", _num(ingest["events_per_s"]), "–", "–",
         _target(ingest["events_per_s"] >= 50_000, ">= 50,000/s")),
        ("Redis commands per event (ingest)", _num(ingest["commands_per_event"], 2), "–", "–", "reported"),
        (f"Redis memory per retained event ({ingest['event_json_bytes']} B JSON, with dedup key; bytes)",
         _num(ingest["memory_bytes_per_event"]), "–", "–", "reported"),
        *([_webhook_row(orch["webhook"])] if "webhook" in orch else []),
        ("Redis commands per workflow run (sustained, incl. its event)", _num(sus["commands_per_run"], 1), "–", "–",
         "reported"),
    ]
    lines = ["| metric | orch | RQ SimpleWorker | orch / RQ | target |", "|---|---:|---:|---:|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines += ["", "Idle latency breakdown (ms, p50 / p99): "
              f"emit -> run created and task queued (engine) {idle['created_ms_p50']:.2f} / {idle['created_ms_p99']:.2f}; "
              f"queued -> task started (RQ + worker) {idle['dispatch_ms_p50']:.2f} / {idle['dispatch_ms_p99']:.2f}; "
              f"task started -> run succeeded (task, records, engine) {idle['finish_ms_p50']:.2f} / "
              f"{idle['finish_ms_p99']:.2f}.",
              f"CPU during sustained, cores busy of {os.cpu_count()} (ms per run): "
              + ", ".join(f"{role} {sus['cpu_cores_busy'][role]:.2f} ({ms:.2f})"
                          for role, ms in sus["cpu_ms_per_run"].items()) + ".",
              "Redis commands per run (sustained): "
              + ", ".join(f"{k} {v}" for k, v in sus["commands_per_run_by_command"].items()) + ".",
              f"Ingest: CPU per event, client (this process) {ingest['cpu_us_per_event']['bench']:.1f} us, "
              f"redis-server {ingest['cpu_us_per_event']['redis']:.1f} us; memory per event "
              f"{ingest['memory_bytes_per_event']:.0f} B, of which the stream entry "
              f"{ingest['memory_bytes_per_event_stream_entry']:.0f} B (the rest: its dedup key).",
              "Redis commands per event (ingest): "
              + ", ".join(f"{k} {v}" for k, v in ingest["commands_per_event_by_command"].items()) + "."]
    lines += [_webhook_note(orch["webhook"])] if "webhook" in orch else []
    lines += _peers_table(results, sus["runs_per_s"], idle["start_ms_p50"])
    return "\n".join(lines)


def _peers_table(results: dict[str, Any], ours_tps: float, ours_p50: float) -> list[str]:
    peers = results.get("peers") or []
    if not peers:
        return ["", f"Peers: {results.get('peers_error') or 'skipped (--skip-peers)'}."]
    lines = ["", "| peer (2 workers, no-op task) | tasks/s | idle p50 ms | idle p99 ms | orch / peer, tasks/s "
             "| orch / peer, p50 |", "|---|---:|---:|---:|---:|---:|"]
    for row in peers:
        if "error" in row:
            lines.append(f"| {row['peer']} | error: {row['error']} | | | | |")
            continue
        lines.append(f"| {row['peer']} ({row['tasks']:,} tasks) | {_num(row['tasks_per_s'])} | "
                     f"{row['idle_latency_ms_p50']:.2f} | {row['idle_latency_ms_p99']:.2f} | "
                     f"{_ratio(ours_tps, row['tasks_per_s'])} | {_ratio(ours_p50, row['idle_latency_ms_p50'])} |")
    return lines


def meta(args: argparse.Namespace, redis_version: str) -> dict[str, Any]:
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "redis": redis_version, "args": vars(args),
            "orch_env": {k: v for k, v in os.environ.items() if k.startswith("ORCH_")}}


# -- main ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run (10,000 events, 30 samples, N=300)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (table on stderr)")
    ap.add_argument("--skip-peers", action="store_true", help="do not measure the peers")
    ap.add_argument("--peers", default="rq-simple",
                    help=f"peers to measure: rq-simple (default), all (= {ALL_PEERS}) or a comma-separated list")
    ap.add_argument("--events", type=int, help="ingest: events to emit (default 100,000; quick 10,000)")
    ap.add_argument("--chunk", type=int, default=5000, help="ingest: events per emit_many call (default 5,000)")
    ap.add_argument("--hook-requests", type=int,
                    help="webhook: signed requests to POST /hooks/github (default 20,000; quick 3,000)")
    ap.add_argument("--hook-connections", type=int, default=16,
                    help="webhook: concurrent keep-alive connections (default 16)")
    ap.add_argument("--only", choices=["webhook"], default=None,
                    help="run one phase only (webhook: orch api alone, signed requests/s)")
    ap.add_argument("--samples", type=int, help="idle latency samples (default 200; quick 30)")
    ap.add_argument("--n", type=int, help="sustained: events emitted at once, also the peers' N (default 2,000)")
    ap.add_argument("--workers", type=int, default=2, help="orch worker processes (default 2, like the peers)")
    ap.add_argument("--log-level", default=None, help="ORCH_LOG_LEVEL of the engine and workers (default: orch's)")
    ap.add_argument("--profile", action="store_true",
                    help="run the engine and workers under cProfile; .prof files in bench/results/profile-<time>/")
    ap.add_argument("--keep-logs", action="store_true", help="keep the temporary directory with the process logs")
    return ap.parse_args(argv)


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def show_profile(path: Path, top: int = 25) -> None:
    """The engine's hottest functions (whole lifetime, all phases), to stderr."""
    import io
    import pstats

    if not path.exists():
        log(f"profile: {path} was not written")
        return
    for key in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(str(path), stream=text).sort_stats(key).print_stats(top)
        log(f"profile of the engine by {key} ({path}):\n{text.getvalue()}")


def measure(args: argparse.Namespace, sizes: dict[str, int], results: dict[str, Any]) -> None:
    stack = Stack()
    if args.profile:
        stack.profile_dir = RESULTS / f"profile-{results['stamp']}"
        stack.profile_dir.mkdir(parents=True, exist_ok=True)
    failed = False
    try:
        stack.start_redis()
        results["meta"] = meta(args, stack.redis_version)
        log(f"bench: redis-server {stack.redis_version} at {stack.url} (data in {stack.tmp})")
        if args.only == "webhook":
            results["orch"] = {"webhook": phase_webhook(stack, sizes["hook_requests"], args.hook_connections)}
            return
        results["orch"] = {"ingest": phase_ingest(stack, sizes["events"], args.chunk)}
        results["orch"]["webhook"] = phase_webhook(stack, sizes["hook_requests"], args.hook_connections)
        results["orch"].update(phase_orch(stack, args, sizes))
        stack.stop_orch()
        if stack.profile_dir is not None:
            show_profile(stack.profile_dir / "engine-0.prof")
    except BenchError:
        failed = True
        raise
    finally:
        stack.close(keep_logs=args.keep_logs or failed)
        if args.keep_logs or failed:
            log(f"bench: process logs kept in {stack.tmp}")
    if args.skip_peers:
        return
    only = ALL_PEERS if args.peers == "all" else args.peers
    tmp = Path(tempfile.mkdtemp(prefix="orch-bench-peers-"))
    try:
        results["peers"] = run_peers(only, sizes["n"], tmp)
    except BenchError as exc:
        log(f"bench: {exc}")
        results["peers_error"] = str(exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    sizes.update({k: v for k in sizes if (v := getattr(args, k)) is not None})
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # nohup
        signal.signal(signal.SIGHUP, _interrupt)
    t0 = time.monotonic()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    results: dict[str, Any] = {"stamp": stamp, "sizes": sizes, "peers": []}
    try:
        measure(args, sizes, results)
    except BenchError as exc:
        log(f"bench: error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("bench: interrupted; every process it started has been stopped")
        return 130
    results["seconds"] = round(time.monotonic() - t0, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    report = f"{table(results)}\n\nWall time: {results['seconds']:.0f} s. Saved {path.relative_to(ROOT)}."
    if args.json:
        log(report)
        print(json.dumps(results, indent=2))
    else:
        print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
