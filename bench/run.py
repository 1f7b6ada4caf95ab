"""orch benchmarks, side by side with peers measured in the same run (`make bench`).

    .venv/bin/python bench/run.py                 full run (about 5 minutes on 2 cores, peers and curves included)
    .venv/bin/python bench/run.py --quick         short smoke run (~40 s; peers: RQ SimpleWorker only)
    .venv/bin/python bench/run.py --json          JSON on stdout (the table goes to stderr)
    .venv/bin/python bench/run.py --skip-peers    orch only
    .venv/bin/python bench/run.py --peers rq-simple   one peer (default: all = RQ simple and fork, Celery, Dramatiq)
    .venv/bin/python bench/run.py --engines fast  orch's fast worker path only (default: fast,rq)
    .venv/bin/python bench/run.py --profile       engine and workers under cProfile (slower; for where time goes)
    .venv/bin/python bench/run.py --only ingest   the ingest phase alone (~10 s)
    .venv/bin/python bench/run.py --only webhook  the webhook phase alone (~10 s)
    .venv/bin/python bench/run.py --only orch     the engine and worker phases, no ingest or webhook
    .venv/bin/python bench/run.py --only fanout --engines fast --fanout 10000 --profile   the fan-out alone
    .venv/bin/python bench/run.py --only maintenance   the engine's maintenance pass alone (~1 minute)
    .venv/bin/python bench/run.py --only matching      rule matching alone: indexed vs naive, 10/1k/10k rules (~1 min)
    .venv/bin/python bench/run.py --only capacity      Redis memory per event, dedup key, run, task, queued job (~30 s)
    .venv/bin/python bench/run.py --only curves        flat costs at 3 sizes: GET /runs, memory per run, engines (~2 min)

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
  Then, once per worker engine (--engines; Redis flushed between them): `orch engine` + --workers
  worker processes on bench/project, `orch worker` (the fast path; --pool: one `orch worker
  --concurrency N`) or `orch worker --engine rq` (RQ's SimpleWorker):
  2. idle        one bench_one event at a time, each run finished before the next: emit -> task
                 started p50/p99 (the task's started_at from its run), emit -> run succeeded, and
                 where the time goes between the two.
  2b. hop        --hops bench_chain runs (a -> b, no-op tasks) one at a time: task a's finished_at
                 (its worker's record) -> task b's started_at, p50/p99, split at b's queued_at.
  3. sustained   N bench_one events emitted at once; one-task workflows/s from the first emit until
                 the last run succeeded (ZCARD of the succeeded index, polled every 2 ms); Redis
                 commands per run; CPU of each process.
  3b. fan-out    one bench_fanout run, items -> work.map(items) -> fan_in over --fanout no-op items
                 (--fanout-rq with --engine rq): item task runs/s from the first item queued to the
                 fan-in started, the run's duration, Redis commands and CPU per item, engine commits
                 (one plain EVAL each) and a 2 s timeline of engine progress and CPU. A run not done
                 within --fanout-limit seconds is reported as skipped.
  Then, every orch process stopped:
  3c. maintenance  `Engine.maintain(force=True)` in this process (the whole pass: sweep with its stall
                 scan, dead letters and reclaiming, trimming), on a flushed Redis holding 1,000 dedup
                 keys and 1,000 retained finished runs, then --maintenance-dedup dedup keys (1,000,000)
                 and --maintenance-runs finished runs (100,000), written as publish.lua and the engine
                 write them; 200 running runs at both sizes. Median time per pass, Redis memory
                 (INFO used_memory), commands and round trips per pass, and the ratio large / small,
                 which must stay close to 1: maintenance follows the work in flight, not the keyspace.
  3d. matching   in this process, no Redis: RuleIndex.matching against the naive loop (match() on every
                 rule) with 10, 1,000 and 10,000 rules of a realistic mix, on CloudEvents with nested data
                 and arrays: events/s (CPU and wall clock), the ratio, and the cost per event at each size
                 (flatness). See bench/matching.py.
  3e. capacity   Redis memory per event, dedup key, queued job, run (by what it leaves: stream entries,
                 decisions, dedup keys, logs, the run's hash and indexes) and task, as INFO used_memory deltas
                 over 10,000 items through `orch engine` and 2 fast workers; Redis commands, Redis CPU and the
                 engine's and workers' CPU per run and per fan-out item. See bench/capacity.py; the figures
                 deploy/CAPACITY.md plans with (bench/capacity_model.py).
  3f. curves     costs that must stay flat as the work grows, at three sizes each, with a verdict (largest /
                 smallest <= 1.5x): `GET /runs` (one `orch api`), `orch runs list --json` and Redis memory per
                 retained run with 1k / 100k / 1M finished runs (--curves-runs; written by replaying what
                 RunStore.write_change queues), and sustained one-task runs/s with 1 / 2 / 3 `orch engine`
                 processes and the same workers (--curves-engines). See bench/curves.py.
  4. peers       ../shared/peers/run.sh (ORCH_BENCH_PEERS to use another script), same N, for the
                 ratios: all four by default, RQ SimpleWorker only with --quick.

Redis commands are counted from INFO commandstats, commands run inside Lua scripts included, this
script's own polling excluded. CPU is psutil's user + system time of each process; "other
processes" is the rest of the machine's busy time meanwhile (other users: noise). Percentiles use
the peers' definition (sorted[int(n * q)]). Results are printed as Markdown tables and saved to
bench/results/<timestamp>.json. ORCH_* variables in the environment reach the engine and workers
(handy for tuning), except those this script sets.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis

from executors.dispatch import RQDispatcher
from orchestrator import Client, Event, Settings
from orchestrator.cli.wiring import load_project
from orchestrator.embedded_redis import find_redis_binary
from orchestrator.engine import Engine
from orchestrator.jsonutil import dumps
from orchestrator.project import Project
from orchestrator.state.keys import ENGINE_GROUP, Keys
from orchestrator.state.store import RunStore
from orchestrator.workflows.advance import Change, apply_record
from orchestrator.workflows.lifecycle import new_run
from orchestrator.workflows.records import RecordKind, TaskRecord
from orchestrator.workflows.runs import EventRef, Run, RunStatus, TaskState, derive_run_id
from orchestrator.workflows.spec import WorkflowSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import capacity  # noqa: E402 - bench/ is not a package on the path
import curves  # noqa: E402
from matching import matching_table, phase_matching  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "bench" / "project"
RESULTS = ROOT / "bench" / "results"
ORCH = Path(sys.executable).parent / "orch"
PEERS = Path(os.environ.get("ORCH_BENCH_PEERS", ROOT.parent / "shared" / "peers" / "run.sh"))
ALL_PEERS = "rq-simple,rq-fork,celery,dramatiq"

RULE = "bench-noop"          # bench/project/rules/bench.yaml: one no-op task
EVENT_TYPE = "bench.noop"
TASK_NODE = "noop"
CHAIN_RULE = "bench-chain"   # a -> b, two no-op tasks
CHAIN_EVENT = "bench.chain"
FANOUT_RULE = "bench-fanout"  # items -> work.map(items) -> fan_in
FANOUT_EVENT = "bench.fanout"
ENGINES = ("fast", "rq")     # orch worker (the fast path), orch worker --engine rq (RQ's SimpleWorker)
SOURCE = "/bench"
PREFIX = "orch"              # the default key prefix, so keys read as documented in state/keys.py
INGEST_PREFIX = "bench-ingest"
POLL_S = 0.002               # the peers poll their done counter every 2 ms too

FULL = {"events": 100_000, "samples": 200, "hops": 200, "n": 2000, "fanout": 10_000, "fanout_rq": 10_000,
        "hook_requests": 20_000, "maintenance_dedup": 1_000_000, "maintenance_runs": 100_000}
QUICK = {"events": 10_000, "samples": 30, "hops": 30, "n": 300, "fanout": 1000, "fanout_rq": 1000,
         "hook_requests": 3000, "maintenance_dedup": 100_000, "maintenance_runs": 10_000}
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
        self.tag = ""  # prefix of the log and profile file names (the worker engine being measured)
        self.started = 0

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


def _usec_per_call(before: dict[str, Any], after: dict[str, Any], name: str) -> float | None:
    calls = after["by_command"].get(name, 0) - before["by_command"].get(name, 0)
    usec = after["usec_by_command"].get(name, 0) - before["usec_by_command"].get(name, 0)
    return round(usec / calls, 1) if calls > 0 else None


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


def phase_webhook(stack: Stack, requests: int, connections: int = 16, api_workers: int = 2) -> dict[str, Any]:
    """`orch api --workers N` alone with one github-verified endpoint: signed requests/s until each is in the
    stream."""
    project = stack.tmp / "hooks-project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns(".orch", "__pycache__"))
    (project / "rules" / "hooks.yaml").write_text(
        f"hooks:\n  - {{name: github, verify: github, secret_env: {HOOK_SECRET_ENV}}}\n")
    secret = uuid.uuid4().hex
    port = _free_port()
    stack.start_orch("api", "--workers", str(api_workers),
                     env_overrides={"ORCH_PROJECT": str(project), "ORCH_KEY_PREFIX": HOOK_PREFIX,
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
        f"keep-alive connections to `orch api --workers {api_workers}`")
    asyncio.run(_hook_load(port, warm, connections))
    api = psutil.Process(stack.orch[-1][1].pid)
    cpu_before = _tree_cpu_s(api)
    t0 = time.perf_counter()
    latencies, statuses = asyncio.run(_hook_load(port, timed, connections))
    elapsed = time.perf_counter() - t0
    api_cpu = _tree_cpu_s(api) - cpu_before
    admin = redis.Redis.from_url(stack.url)
    in_stream = admin.xlen(Keys(HOOK_PREFIX).events)
    _drop_prefix(admin, HOOK_PREFIX)
    admin.close()
    stack.stop_orch()
    bad = [code for code in statuses if code != 202]
    if bad or in_stream != requests + len(warm):
        raise BenchError(f"webhook: {len(bad)} non-202 answers ({sorted(set(bad))}); "
                         f"{in_stream:,} of {requests + len(warm):,} events in the stream")
    log(f"webhook: {requests / elapsed:,.0f} requests/s")
    return {"requests": requests, "connections": connections, "body_bytes": len(body),
            "seconds": round(elapsed, 3), "requests_per_s": round(requests / elapsed, 1),
            "latency_ms_p50": round(pct(latencies, 0.5), 3), "latency_ms_p99": round(pct(latencies, 0.99), 3),
            "api_cpu_cores_busy": round(api_cpu / elapsed, 2), "api_workers": api_workers,
            "api_cpu_us_per_request": round(api_cpu * 1e6 / requests, 1)}


def _tree_cpu_s(process: psutil.Process) -> float:
    """User + system CPU seconds of `process` and its children (`orch api --workers`' copies)."""
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = each.cpu_times()
            total += times.user + times.system
    return total


# -- phases 2 to 5: engine and workers, once per worker engine ---------------------------------------------


class Probe:
    """Reads run state on its own connection and counts its commands, which are not the product's cost."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url)
        self.keys = Keys(PREFIX)
        self.store = RunStore(self.redis, self.keys, retention_s=86400)
        self.own: dict[str, int] = {}
        self._succeeded = self.keys.runs_by_status(RunStatus.SUCCEEDED)
        self._failed = self.keys.runs_by_status(RunStatus.FAILED)
        self._queue = f"rq:queue:{self.keys.queue_name('default')}"

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

    def backlog(self) -> tuple[int, int, int]:
        """(results records the engine has read, records written but not yet read, jobs waiting in the
        default queue): how far the engine and the workers are behind. One round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.execute_command("XINFO", "GROUPS", self.keys.results)
        pipe.llen(self._queue)
        self._count("xinfo|groups")
        self._count("llen")
        groups, queued = pipe.execute()
        for group in groups:
            info = dict(zip(group[::2], group[1::2], strict=False)) if isinstance(group, list) else group
            name = info.get(b"name", info.get("name"))
            if name in (ENGINE_GROUP, ENGINE_GROUP.encode()):
                read = info.get(b"entries-read", info.get("entries-read")) or 0
                lag = info.get(b"lag", info.get("lag")) or 0
                return int(read), int(lag), int(queued)
        return 0, 0, int(queued)


def emit_one(client: Client, n: int, *, event_type: str = EVENT_TYPE, rule: str = RULE) -> tuple[str, float]:
    """Emit one event; (its run id, the emit time in epoch seconds)."""
    event_id = uuid.uuid4().hex
    t = time.time()
    client.emit(event_type, {"n": n}, id=event_id)
    return derive_run_id(rule, SOURCE, event_id), t


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


def worker_args(engine: str) -> list[str]:
    return ["--engine", "rq"] if engine == "rq" else []


def start_orch(stack: Stack, engine: str, args: argparse.Namespace, probe: Probe, client: Client) -> str:
    """The engine and `args.workers` worker processes of `engine`; returns how the workers were started."""
    extra = worker_args(engine)
    pool = engine == "fast" and args.pool
    how = (f"orch worker --concurrency {args.workers}" if pool else
           f"{args.workers} x orch worker{' ' + ' '.join(extra) if extra else ''}")
    log(f"[{engine}] starting `orch engine` and {how} on {PROJECT.relative_to(ROOT)}")
    stack.start_orch("engine", log_level=args.log_level)
    if pool:
        stack.start_orch("worker", *extra, "--concurrency", str(args.workers), log_level=args.log_level)
    else:
        for _ in range(args.workers):
            stack.start_orch("worker", *extra, log_level=args.log_level)
    run_id, _ = emit_one(client, -1)
    wait_run(stack, probe, run_id, 90)
    deadline = time.monotonic() + 30
    while probe.workers() < args.workers:
        stack.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"only {probe.workers()} of {args.workers} workers registered (logs: {stack.tmp})")
        time.sleep(0.05)
    for i in range(10):  # every worker has run a job, every code path is warm
        wait_run(stack, probe, emit_one(client, -2 - i)[0], 30)
    for i in range(3):
        wait_run(stack, probe, emit_one(client, -20 - i, event_type=CHAIN_EVENT, rule=CHAIN_RULE)[0], 30)
    wait_run(stack, probe, emit_one(client, 20, event_type=FANOUT_EVENT, rule=FANOUT_RULE)[0], 60)
    return how


def _ms_stats(series: dict[str, list[float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, values in series.items():
        out[f"{name}_ms_p50"] = round(pct(values, 0.5), 3)
        out[f"{name}_ms_p99"] = round(pct(values, 0.99), 3)
    return out


def phase_idle(stack: Stack, probe: Probe, client: Client, samples: int, engine: str) -> dict[str, Any]:
    log(f"[{engine}] idle: {samples} events one at a time, each run finished before the next")
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
            log(f"[{engine}] idle: {i + 1}/{samples} samples, emit -> task start p50 {pct(series['start'], 0.5):.2f} ms")
    out: dict[str, Any] = {"samples": samples, **_ms_stats(series)}
    out["start_ms_max"] = round(max(series["start"]), 3)
    return out


def phase_hop(stack: Stack, probe: Probe, client: Client, samples: int, engine: str) -> dict[str, Any]:
    """Two-task chains a -> b at idle, one at a time: a's finished record (worker clock) -> b started."""
    log(f"[{engine}] hop: {samples} chain runs (a -> b) one at a time, each finished before the next")
    series: dict[str, list[float]] = {"hop": [], "engine": [], "pickup": [], "a_done_to_run_done": []}
    for i in range(samples):
        run_id, _ = emit_one(client, i, event_type=CHAIN_EVENT, rule=CHAIN_RULE)
        run = wait_run(stack, probe, run_id, 30)
        a, b = run.tasks["a"], run.tasks["b"]
        if a.finished_at is None or b.queued_at is None or b.started_at is None or run.finished_at is None:
            raise BenchError(f"chain run {run_id}: a's finish or b's queue/start time not recorded")
        done, queued, started = a.finished_at.timestamp(), b.queued_at.timestamp(), b.started_at.timestamp()
        series["hop"].append((started - done) * 1000)       # a done -> b started (both worker clocks)
        series["engine"].append((queued - done) * 1000)     # a done -> the engine queued b
        series["pickup"].append((started - queued) * 1000)  # b queued -> a worker started it
        series["a_done_to_run_done"].append((run.finished_at.timestamp() - done) * 1000)
        if (i + 1) % 50 == 0 or i + 1 == samples:
            log(f"[{engine}] hop: {i + 1}/{samples} runs, a done -> b started p50 {pct(series['hop'], 0.5):.2f} ms")
    out: dict[str, Any] = {"samples": samples, **_ms_stats(series)}
    out["hop_ms_max"] = round(max(series["hop"]), 3)
    return out


def background_rate(admin: redis.Redis, seconds: float = 2.0) -> float:
    """Commands/s the idle engine and workers send (polling, heartbeats): the noise under phase 3."""
    before = stats(admin)
    time.sleep(seconds)
    after = stats(admin)
    return round(sum(commands_between(before, after, {}).values()) / seconds, 1)


def _cpu_report(cpu_before: dict[str, float], cpu_after: dict[str, float], elapsed: float,
                n: int) -> dict[str, dict[str, float]]:
    cpu = {role: cpu_after[role] - cpu_before.get(role, 0.0) for role in cpu_after}
    if "machine" in cpu:  # what the rest of the machine used meanwhile (other users' processes: noise)
        cpu["other"] = max(0.0, cpu["machine"] - sum(v for r, v in cpu.items() if r != "machine"))
    return {"cpu_cores_busy": {role: round(sec / elapsed, 2) for role, sec in cpu.items()},
            "cpu_ms_per_task": {role: round(sec * 1000 / n, 3) for role, sec in cpu.items()}}


def _engine_commits(delta: dict[str, int]) -> int:
    """The engine's commits in a `commands_between` delta: each reads its runs with one plain EVAL (the
    workers, RQ and the client call their scripts by EVALSHA; RQ also WATCHes, so WATCH would not do)."""
    return delta.get("eval", 0)


def phase_sustained(stack: Stack, probe: Probe, client: Client, admin: redis.Redis, n: int,
                    engine: str) -> dict[str, Any]:
    base_ok, base_failed = probe.counts()
    events = [{"type": EVENT_TYPE, "data": {"n": i}} for i in range(n)]
    log(f"[{engine}] sustained: emitting {n:,} events at once, then waiting for {n:,} runs to succeed")
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
            log(f"[{engine}] sustained: {done:,}/{n:,} runs succeeded")
            stack.check_alive()
            next_report = now + 1.0
        if done < n:
            time.sleep(POLL_S)
    elapsed = time.time() - t0
    after, cpu_after = stats(admin), stack.cpu_seconds()
    log(f"[{engine}] sustained: {n:,}/{n:,} runs succeeded in {elapsed:.2f}s ({n / elapsed:,.0f}/s)")
    delta = commands_between(before, after, probe.own)
    last_finish = _last_finish(probe, event_ids)
    commits = _engine_commits(delta)
    return {"runs": n, "seconds": round(elapsed, 3), "emit_seconds": round(emit_s, 3),
            "runs_per_s": round(n / elapsed, 1),
            "runs_per_s_by_last_finished_at": round(n / max(1e-6, last_finish - t0), 1),
            "commands_per_run": round(sum(delta.values()) / n, 2),
            "commands_per_run_by_command": per(delta, n),
            "redis_usec_per_run_by_command": usec_per(before, after, n),
            "engine_commits": commits, "runs_per_engine_commit": round(n / commits, 1) if commits else None,
            **_cpu_report(cpu_before, cpu_after, elapsed, n)}


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


def phase_fanout(stack: Stack, probe: Probe, client: Client, admin: redis.Redis, n: int, engine: str,
                 limit_s: float) -> dict[str, Any]:
    """One run of items -> work.map(items) -> fan_in over `n` no-op items."""
    log(f"[{engine}] fan-out: one bench_fanout run over {n:,} items (items -> work.map(items) -> fan_in)")
    probe.own.clear()
    read0, _, _ = probe.backlog()
    before, cpu_before = stats(admin), stack.cpu_seconds()
    run_id, t0 = emit_one(client, n, event_type=FANOUT_EVENT, rule=FANOUT_RULE)
    max_lag = max_queued = 0
    last_progress: tuple[int, int] = (-1, -1)
    last_change = time.monotonic()
    next_report, deadline = last_change + 2.0, last_change + limit_s
    timeline: list[dict[str, float | None]] = []  # every 2 s: progress, engine commits and CPU in the interval
    snap, snap_cpu, snap_t, snap_read = before, cpu_before, time.time(), read0
    status = None
    while (status := probe.outcome(run_id)) is None:
        now = time.monotonic()
        read, lag, queued = probe.backlog()
        max_lag, max_queued = max(max_lag, lag), max(max_queued, queued)
        if (read, queued) != last_progress:
            last_progress, last_change = (read, queued), now
        if now >= next_report:
            cur, cur_cpu, cur_t = stats(admin), stack.cpu_seconds(), time.time()
            probe.own["info"] = probe.own.get("info", 0) + 1
            commits = cur["by_command"].get("eval", 0) - snap["by_command"].get("eval", 0)
            span_s = max(1e-6, cur_t - snap_t)
            busy = {r: (cur_cpu.get(r, 0.0) - snap_cpu.get(r, 0.0)) / span_s for r in cur_cpu}
            busy["other"] = max(0.0, busy.get("machine", 0.0) - sum(v for r, v in busy.items() if r != "machine"))
            timeline.append({"t_s": round(cur_t - t0, 2), "records_read": read - read0, "not_yet_read": lag,
                             "queued": queued, "engine_commits": commits,
                             "ms_per_commit": round(span_s * 1000 / commits, 1) if commits else None,
                             "records_per_commit": round((read - snap_read) / commits, 1) if commits else None,
                             **{f"{r}_cores": round(busy[r], 2) for r in ("engine", "worker", "redis", "other")}})
            log(f"[{engine}] fan-out: {cur_t - t0:5.1f} s: results records read by the engine {read - read0:,} "
                f"(not yet read: {lag:,}); jobs queued {queued:,}; engine {commits} commits"
                + (f" ({span_s * 1000 / commits:.0f} ms each, {(read - snap_read) / commits:.0f} records each)"
                   if commits else "")
                + f"; cores busy: engine {busy['engine']:.2f}, workers {busy['worker']:.2f}, redis {busy['redis']:.2f}"
                f", other processes {busy['other']:.2f}")
            snap, snap_cpu, snap_t, snap_read = cur, cur_cpu, cur_t, read
            stack.check_alive()
            next_report = now + 2.0
        if now > deadline or now - last_change > 60:
            why = "stalled for 60 s" if now - last_change > 60 else f"not finished within {limit_s:.0f} s"
            log(f"[{engine}] fan-out: {why}; skipped (logs: {stack.tmp})")
            return {"items": n, "error": f"{why}: the engine had read {read - read0:,} results records "
                    f"(~2 per item), {queued:,} jobs still queued", "seconds": round(time.time() - t0, 1),
                    "timeline": timeline}
        time.sleep(0.05)
    t_end = time.time()
    after, cpu_after = stats(admin), stack.cpu_seconds()
    read_end, _, _ = probe.backlog()
    run = probe.run(run_id)
    if status != RunStatus.SUCCEEDED:
        raise BenchError(f"fan-out run {run_id} {status}: {run.error}")
    children = [t for t in run.tasks.values() if t.parent == "work"]
    items_task, fan_in = run.tasks["items"], run.tasks["fan_in"]
    if len(children) != n or any(c.queued_at is None or c.started_at is None or c.finished_at is None
                                 for c in children) or fan_in.started_at is None or fan_in.queued_at is None \
            or items_task.finished_at is None or run.finished_at is None:
        raise BenchError(f"fan-out run {run_id}: {len(children)} items of {n}, or times not recorded")
    if any(c.attempt != 1 for c in children):
        log(f"[{engine}] fan-out: {sum(c.attempt != 1 for c in children)} items ran more than once")
    first_queued = min(c.queued_at.timestamp() for c in children)  # type: ignore[union-attr]
    last_queued = max(c.queued_at.timestamp() for c in children)  # type: ignore[union-attr]
    first_started = min(c.started_at.timestamp() for c in children)  # type: ignore[union-attr]
    last_finished = max(c.finished_at.timestamp() for c in children)  # type: ignore[union-attr]
    fan_in_started, fan_in_queued = fan_in.started_at.timestamp(), fan_in.queued_at.timestamp()
    items_done = items_task.finished_at.timestamp()
    span = fan_in_started - first_queued
    elapsed = t_end - t0
    delta = commands_between(before, after, probe.own)
    commits = _engine_commits(delta)
    records = read_end - read0
    cpu = _cpu_report(cpu_before, cpu_after, elapsed, n)
    engine_cpu = cpu_after.get("engine", 0.0) - cpu_before.get("engine", 0.0)
    log(f"[{engine}] fan-out: {n:,} items in {span:.2f} s ({n / span:,.0f} item task runs/s); run took "
        f"{run.duration_s:.2f} s; {commits} engine commits")
    return {
        "items": n, "run": run_id, "seconds": round(elapsed, 3),
        "item_runs_per_s": round(n / span, 1),
        "item_runs_per_s_until_last_item_done": round(n / max(1e-6, last_finished - first_queued), 1),
        "item_runs_per_s_first_started_to_last_done": round(n / max(1e-6, last_finished - first_started), 1),
        "first_item_queued_to_fan_in_started_s": round(span, 3),
        "run_duration_s": round(run.duration_s or 0.0, 3),
        "emit_to_run_finished_s": round(run.finished_at.timestamp() - t0, 3),
        "emit_to_items_done_s": round(items_done - t0, 3),
        "items_done_to_first_item_queued_ms": round((first_queued - items_done) * 1000, 1),
        "items_queued_spread_ms": round((last_queued - first_queued) * 1000, 1),
        "first_item_queued_to_started_ms": round((first_started - first_queued) * 1000, 1),
        "last_item_done_to_fan_in_queued_ms": round((fan_in_queued - last_finished) * 1000, 1),
        "fan_in_queued_to_started_ms": round((fan_in_started - fan_in_queued) * 1000, 1),
        "commands_per_item": round(sum(delta.values()) / n, 2),
        "commands_per_item_by_command": per(delta, n),
        "redis_usec_per_item_by_command": usec_per(before, after, n),
        "results_records": records, "records_per_item": round(records / n, 2),
        "engine_commits": commits,
        "records_per_engine_commit": round(records / commits, 1) if commits else None,
        "engine_ms_per_commit_wall": round(elapsed * 1000 / commits, 1) if commits else None,
        "engine_cpu_ms_per_commit": round(engine_cpu * 1000 / commits, 1) if commits else None,
        "redis_usec_per_read_runs_eval": _usec_per_call(before, after, "eval"),
        "max_results_not_yet_read": max_lag, "max_jobs_queued": max_queued,
        **cpu, "timeline": timeline,
    }


def phase_orch(stack: Stack, args: argparse.Namespace, sizes: dict[str, int], engine: str) -> dict[str, Any]:
    """Every engine-and-workers phase for one worker engine (`fast` or `rq`), on a flushed Redis."""
    admin = redis.Redis.from_url(stack.url)
    admin.flushall()
    probe = Probe(stack.url)
    out: dict[str, Any] = {}
    with Client(settings=Settings(redis_url=stack.url, key_prefix=PREFIX), source=SOURCE) as client:
        out["workers"] = start_orch(stack, engine, args, probe, client)
        if args.only != "fanout":
            out["idle"] = phase_idle(stack, probe, client, sizes["samples"], engine)
            out["hop"] = phase_hop(stack, probe, client, sizes["hops"], engine)
            background = background_rate(admin)
            out["sustained"] = phase_sustained(stack, probe, client, admin, sizes["n"], engine)
            out["sustained"]["background_commands_per_s"] = background
        fanout = sizes["fanout"] if engine == "fast" else sizes["fanout_rq"]
        if fanout > 0:
            out["fanout"] = phase_fanout(stack, probe, client, admin, fanout, engine, args.fanout_limit)
        else:
            out["fanout"] = {"items": 0, "error": "skipped (--fanout-rq 0)" if engine == "rq" else "skipped"}
    stack.stop_orch()
    probe.redis.close()
    admin.close()
    return out



# -- phase 3c: maintenance ----------------------------------------------------------------------------------

MAINTENANCE_RUNNING = 200  # running runs at both sizes: work in flight, which the stall scan reads each pass
MAINTENANCE_PASSES = 15    # timed passes per size (after one untimed)
MAINTENANCE_WORKFLOW = "bench_chain"  # a -> b: finished runs with two tasks, written as the engine writes them

# Dedup keys as publish.lua writes them (lib/publish_one.lua): <p>:dedup:<32 hex digits> -> the entry id of
# the event, with the dedup window as TTL; the digest here is sha1 cut to blake2b-128's length.
#   KEYS  none (the keys are made up here; a bench Redis is not a cluster)
#   ARGV  the key prefix <p>:dedup:, first and last number, TTL in seconds, the entry ids' milliseconds
_DEDUP_LUA = """
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  redis.call('SET', ARGV[1] .. string.sub(redis.sha1hex('bench' .. i), 1, 32), ARGV[5] .. '-' .. i, 'EX', ARGV[4])
end
return 1
"""


def _bench_run(spec: WorkflowSpec, event_id: str, now: datetime, *, finished: bool) -> Change:
    """A run of `spec` as the engine writes it when it starts (its first task queued) or, `finished`, once
    every task succeeded (the workers' records applied by the engine's own pure code)."""
    run_id = derive_run_id(CHAIN_RULE, SOURCE, event_id)
    change = new_run(run_id, spec, CHAIN_RULE, EventRef(event_id, SOURCE, CHAIN_EVENT), {"value": 1}, now,
                     {"n": 1})
    while finished and change.run.status is RunStatus.RUNNING:
        queued = [t for t in change.run.tasks.values() if t.state is TaskState.QUEUED]
        if not queued:
            raise BenchError(f"maintenance: a {spec.name} run neither finished nor queued a task")
        for task in queued:
            record = TaskRecord(RecordKind.SUCCEEDED, run_id, task.node, task.attempt, now.timestamp(),
                                worker="bench-worker", result=1, duration_s=0.001)
            apply_record(change, record, now)
    return change


def _write_runs(client: redis.Redis, store: RunStore, spec: WorkflowSpec, n: int, *, finished: bool,
                what: str) -> None:
    """`n` runs, 1,000 per pipeline (each with its index entries, as RunStore.write_change queues them)."""
    now = datetime.now(UTC)
    done, next_report = 0, time.perf_counter() + 1.0
    while done < n:
        size = min(1000, n - done)
        pipe = client.pipeline(transaction=False)
        for i in range(done, done + size):
            store.write_change(pipe, _bench_run(spec, f"{what}-{i}", now, finished=finished))
        pipe.execute()
        done += size
        if time.perf_counter() >= next_report or done == n:
            log(f"maintenance: {done:,}/{n:,} {what} runs written")
            next_report = time.perf_counter() + 1.0


def _write_dedup_keys(client: redis.Redis, keys: Keys, n: int, ttl_s: int) -> None:
    script = client.register_script(_DEDUP_LUA)
    ms = int(time.time() * 1000)
    done, next_report = 0, time.perf_counter() + 1.0
    while done < n:
        size = min(50_000, n - done)
        script(args=[keys.dedup(""), done, done + size - 1, ttl_s, ms])
        done += size
        if time.perf_counter() >= next_report or done == n:
            log(f"maintenance: {done:,}/{n:,} dedup keys written")
            next_report = time.perf_counter() + 1.0


def _maintenance_size(stack: Stack, project: Project, dedup: int, finished: int) -> dict[str, Any]:
    """Time Engine.maintain(force=True) on a flushed Redis holding `dedup` dedup keys, `finished` retained
    finished runs and MAINTENANCE_RUNNING running runs."""
    client = redis.Redis.from_url(stack.url)
    client.flushall()
    settings = Settings(redis_url=stack.url, project=PROJECT, key_prefix=PREFIX)
    engine = Engine(client, settings, project, RQDispatcher(client, settings), consumer="bench-maintenance")
    engine.consumer.ensure_groups()
    spec = project.workflows[MAINTENANCE_WORKFLOW].spec
    log(f"maintenance: {dedup:,} dedup keys, {finished:,} finished runs, {MAINTENANCE_RUNNING} running runs")
    _write_dedup_keys(client, engine.keys, dedup, int(settings.event_dedup_window_s))
    _write_runs(client, engine.store, spec, finished, finished=True, what="finished")
    _write_runs(client, engine.store, spec, MAINTENANCE_RUNNING, finished=False, what="running")
    if client.zcard(engine.keys.runs_by_status("succeeded")) != finished:
        raise BenchError("maintenance: the finished runs are not all in their index")
    engine.maintain(force=True)  # untimed: connections, the first reads
    before = stats(client)
    times_ms, cpu_ms = [], []
    for _ in range(MAINTENANCE_PASSES):
        t0, cpu0 = time.perf_counter(), time.process_time()
        engine.maintain(force=True)
        times_ms.append((time.perf_counter() - t0) * 1000)
        cpu_ms.append((time.process_time() - cpu0) * 1000)  # the engine's own CPU: less noisy than wall time
    after = stats(client)
    keys_total = int(client.dbsize())
    client.close()
    delta = commands_between(before, after, {})
    for snapshot in (before, after):  # Redis time of the passes, not of our INFO
        snapshot["usec_by_command"].pop("info", None)
    usec = sum(after["usec_by_command"].values()) - sum(before["usec_by_command"].values())
    times_ms.sort()
    cpu_ms.sort()
    log(f"maintenance: {times_ms[len(times_ms) // 2]:.2f} ms per pass (median of {MAINTENANCE_PASSES})")
    return {"dedup_keys": dedup, "finished_runs": finished, "running_runs": MAINTENANCE_RUNNING, "keys": keys_total,
            "passes": MAINTENANCE_PASSES, "ms_per_pass_median": round(times_ms[len(times_ms) // 2], 3),
            "ms_per_pass_min": round(times_ms[0], 3), "ms_per_pass_max": round(times_ms[-1], 3),
            "engine_cpu_ms_per_pass_median": round(cpu_ms[len(cpu_ms) // 2], 3),
            "used_memory": before["used_memory"], "used_memory_mb": round(before["used_memory"] / 2**20, 1),
            "commands_per_pass": round(sum(delta.values()) / MAINTENANCE_PASSES, 1),
            "commands_per_pass_by_command": per(delta, MAINTENANCE_PASSES, top=20),
            "round_trips_per_pass": round((after["reads"] - before["reads"] - 1) / MAINTENANCE_PASSES, 1),
            "redis_us_per_pass": round(usec / MAINTENANCE_PASSES, 1),
            "redis_us_per_pass_by_command": usec_per(before, after, MAINTENANCE_PASSES, top=20)}


def phase_maintenance(stack: Stack, sizes: dict[str, int]) -> dict[str, Any]:
    """One maintenance pass of the engine (sweep with its stall scan, dead letters and reclaiming, trimming),
    in this process, with few and with many dedup keys and retained finished runs: it must stay flat."""
    project = load_project(PROJECT)
    small = _maintenance_size(stack, project, 1000, 1000)
    large = _maintenance_size(stack, project, sizes["maintenance_dedup"], sizes["maintenance_runs"])
    return {"small": small, "large": large,
            "time_ratio": round(large["ms_per_pass_median"] / small["ms_per_pass_median"], 2),
            "cpu_ratio": round(large["engine_cpu_ms_per_pass_median"] / small["engine_cpu_ms_per_pass_median"], 2),
            "redis_time_ratio": round(large["redis_us_per_pass"] / small["redis_us_per_pass"], 2),
            "memory_ratio": round(large["used_memory"] / small["used_memory"], 1)}


# -- phase 3e: capacity ------------------------------------------------------------------------------------


def phase_capacity(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """The capacity figures (bench/capacity.py), with `orch engine` and the fast workers on a flushed Redis."""
    admin = redis.Redis.from_url(stack.url)
    admin.flushall()
    probe = Probe(stack.url)
    stack.tag = "capacity-"
    with Client(settings=Settings(redis_url=stack.url, key_prefix=PREFIX), source=SOURCE) as client:
        workers = start_orch(stack, "fast", args, probe, client)
        runner = capacity.Runner(stack, probe, client, admin, stats, commands_between, log)
        try:
            out = capacity.measure(runner, load_project(PROJECT), capacity.QUICK_SIZES if args.quick else
                                   capacity.SIZES, (RULE, EVENT_TYPE), (FANOUT_RULE, FANOUT_EVENT), "bench_one")
        except capacity.CapacityError as exc:
            raise BenchError(str(exc)) from exc
    stack.stop_orch()
    probe.redis.close()
    admin.close()
    return {"workers": workers, **out}


def phase_curves(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """The flatness curves (bench/curves.py), lent this script's process and measurement helpers."""
    deps = curves.Deps(stack, start_orch, Probe, phase_sustained, pct, log, load_project(PROJECT), PROJECT, PREFIX)
    try:
        return curves.phase_curves(deps, args, capacity.used_memory)
    except curves.CurveError as exc:
        raise BenchError(str(exc)) from exc


# -- peers ------------------------------------------------------------------------------------------------


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

PEER_LABELS = {"rq-simple": ("RQ SimpleWorker", "RQ"), "rq-fork": ("RQ fork", "RQ fork"),
               "celery": ("Celery", "Celery"), "dramatiq": ("Dramatiq", "Dramatiq")}
ENGINE_LABELS = {"fast": "orch fast path", "rq": "orch --engine rq"}


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


def _peers_ok(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for row in results.get("peers") or [] if "error" not in row]


def _vs_peers(results: dict[str, Any], ours: float | None, field: str) -> str:
    """'7.10x RQ, 0.81x Dramatiq': ours / each peer's `field`."""
    if ours is None:
        return "–"
    parts = [f"{_ratio(ours, row.get(field))} {PEER_LABELS.get(row['peer'], (row['peer'], row['peer']))[1]}"
             for row in _peers_ok(results) if row.get(field)]
    return ", ".join(parts) or "–"


def _target(ok: bool | None, text: str) -> str:
    return text if ok is None else f"{text}: {'met' if ok else 'NOT met'}"


def _webhook_row(hook: dict[str, Any]) -> tuple[str, str, str, str]:
    return (f"webhook, signed github-style POST /hooks/{{name}} to 202 (`orch api --workers "
            f"{hook.get('api_workers', 1)}`, {hook['connections']} connections; requests/s)",
            _num(hook["requests_per_s"]), "reported", "")


def _webhook_note(hook: dict[str, Any]) -> str:
    return (f"Webhook: {hook['requests']:,} requests of {hook['body_bytes']} B, latency p50 / p99 "
            f"{hook['latency_ms_p50']:.2f} / {hook['latency_ms_p99']:.2f} ms; `orch api` CPU "
            f"{hook['api_cpu_cores_busy']:.2f} cores busy, {hook['api_cpu_us_per_request']:.0f} us per request "
            "(verify, parse, publish script).")


def _get(data: dict[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _fanout_ok(orch: dict[str, Any], engine: str) -> dict[str, Any] | None:
    fan = _get(orch, engine, "fanout")
    return fan if fan and "error" not in fan else None


def _cpu_cell(cpu: dict[str, float] | None) -> str:
    if not cpu:
        return "–"
    return " / ".join(f"{cpu.get(role, 0.0):.3f}" for role in ("engine", "worker", "redis"))


def main_table(results: dict[str, Any]) -> list[str]:
    """The side-by-side table: orch's two worker engines, the peers, ratios, targets."""
    orch, sizes = results["orch"], results["sizes"]
    fast, rq = orch.get("fast") or {}, orch.get("rq") or {}
    peers = _peers_ok(results)
    peer_heads = [PEER_LABELS.get(p["peer"], (p["peer"], ""))[0] for p in peers]
    head = ["metric", ENGINE_LABELS["fast"], ENGINE_LABELS["rq"], "fast / rq", *peer_heads,
            "fast vs peers", "--engine rq vs peers", "target"]
    dramatiq = _peer(results, "dramatiq")
    fan_f, fan_r = _fanout_ok(orch, "fast"), _fanout_ok(orch, "rq")

    def row(metric: str, f: float | None, r: float | None, digits: int, peer_field: str | None,
            target: str, lower_is_better: bool = False) -> list[str]:
        peer_cells = [_num(p.get(peer_field), digits) if peer_field else "–" for p in peers]
        return [metric, _num(f, digits), _num(r, digits), _ratio(f, r) if not lower_is_better else _ratio(f, r),
                *peer_cells, _vs_peers(results, f, peer_field) if peer_field else "–",
                _vs_peers(results, r, peer_field) if peer_field else "–", target]

    e2e = _get(fast, "sustained", "runs_per_s")
    e2e_target = (_target(e2e >= dramatiq["tasks_per_s"], f">= Dramatiq ({dramatiq['tasks_per_s']:,.0f}/s)")
                  if dramatiq and e2e else ">= Dramatiq's tasks/s (`--peers all`)")
    p50, p99 = _get(fast, "idle", "start_ms_p50"), _get(fast, "idle", "start_ms_p99")
    hop50, hop99 = _get(fast, "hop", "hop_ms_p50"), _get(fast, "hop", "hop_ms_p99")
    fan_rate = fan_f["item_runs_per_s"] if fan_f else None
    fan_n_f = _get(fast, "fanout", "items") or 0
    fan_n_r = _get(rq, "fanout", "items") or 0
    fan_label = f"{fan_n_f:,}" if fan_n_f == fan_n_r or not fan_n_r else f"{fan_n_f:,} (rq: {fan_n_r:,})"
    rows = [
        row(f"end-to-end one-task workflows/s, 2 worker processes ({sizes['n']:,} events at once; peers: raw "
            "tasks/s, same N queued and drained)", e2e, _get(rq, "sustained", "runs_per_s"), 0, "tasks_per_s",
            e2e_target),
        row("idle latency p50, emit -> task start (ms; peers: enqueue -> start; orch / peer)", p50,
            _get(rq, "idle", "start_ms_p50"), 2, "idle_latency_ms_p50",
            _target(p50 <= 3 if p50 is not None else None, "<= 3 ms"), True),
        row("idle latency p99, emit -> task start (ms)", p99, _get(rq, "idle", "start_ms_p99"), 2,
            "idle_latency_ms_p99", _target(p99 <= 10 if p99 is not None else None, "<= 10 ms"), True),
        row(f"hop latency p50, task a done -> dependent b started ({sizes['hops']} chains at idle; ms)", hop50,
            _get(rq, "hop", "hop_ms_p50"), 2, None,
            _target(hop50 <= 3 if hop50 is not None else None, "<= 3 ms (Hatchet ~30 ms)"), True),
        row("hop latency p99 (ms)", hop99, _get(rq, "hop", "hop_ms_p99"), 2, None, "–", True),
        row(f"fan-out, {fan_label} no-op items in one run: item task runs/s (first item queued -> fan-in "
            "started; peers: raw tasks/s)", fan_rate, fan_r["item_runs_per_s"] if fan_r else None, 0,
            "tasks_per_s", _target(fan_rate >= 2000 if fan_rate else None, ">= 2,000/s (>= 12x Prefect)")),
        row("fan-out: whole run, created -> succeeded (s)", fan_f["run_duration_s"] if fan_f else None,
            fan_r["run_duration_s"] if fan_r else None, 2, None, "–", True),
        row("Redis commands per one-task workflow run (sustained, incl. its event)",
            _get(fast, "sustained", "commands_per_run"), _get(rq, "sustained", "commands_per_run"), 1, None,
            "reported", True),
        row("Redis commands per fan-out item task (whole run / items)", fan_f["commands_per_item"] if fan_f else None,
            fan_r["commands_per_item"] if fan_r else None, 1, None, "reported", True),
    ]
    cpu_rows = [
        ["CPU ms per run, sustained: engine / workers / redis", _cpu_cell(_get(fast, "sustained", "cpu_ms_per_task")),
         _cpu_cell(_get(rq, "sustained", "cpu_ms_per_task")), "–", *["–"] * len(peers), "–", "–", "reported"],
        ["CPU ms per item, fan-out: engine / workers / redis", _cpu_cell(fan_f["cpu_ms_per_task"] if fan_f else None),
         _cpu_cell(fan_r["cpu_ms_per_task"] if fan_r else None), "–", *["–"] * len(peers), "–", "–", "reported"],
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (3 + len(peers)) + "---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows + cpu_rows]
    for engine in ("fast", "rq"):
        fan = _get(orch, engine, "fanout")
        if fan and "error" in fan:
            lines.append(f"\nFan-out with {ENGINE_LABELS[engine]} ({fan['items']:,} items): {fan['error']}.")
    return lines


def limits_table(results: dict[str, Any]) -> list[str]:
    """Where the time goes: cores busy and CPU per task of each process, Redis commands per task."""
    orch = results["orch"]
    lines = ["", "What limits it (cores busy of "
             f"{os.cpu_count()}, CPU per task in ms, Redis commands per task):", "",
             "| phase | tasks/s | engine cores (ms/task) | workers cores (ms/task) | redis cores (ms/task) "
             "| other processes, cores | commands/task | engine commits (tasks/commit) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for engine in ("fast", "rq"):
        data = orch.get(engine) or {}
        for phase, rate_key, cmd_key in (("sustained", "runs_per_s", "commands_per_run"),
                                         ("fanout", "item_runs_per_s", "commands_per_item")):
            ph = data.get(phase)
            if not ph or "error" in ph:
                continue
            busy, ms = ph["cpu_cores_busy"], ph["cpu_ms_per_task"]
            cells = [f"{busy.get(r, 0.0):.2f} ({ms.get(r, 0.0):.3f})" for r in ("engine", "worker", "redis")]
            cells.append(f"{busy.get('other', 0.0):.2f}")
            commits = ph.get("engine_commits")
            tasks = ph.get("runs") or ph.get("items")
            per_commit_txt = f"{commits:,} ({tasks / commits:,.1f})" if commits else "–"
            name = f"{ENGINE_LABELS[engine]}, {phase}" + (f" ({ph['items']:,} items)" if phase == "fanout" else "")
            lines.append(f"| {name} | {_num(ph[rate_key])} | {' | '.join(cells)} | {ph[cmd_key]:.1f} | {per_commit_txt} |")
    return lines


def notes(results: dict[str, Any]) -> list[str]:
    orch = results["orch"]
    lines = [""]
    for engine in ("fast", "rq"):
        data = orch.get(engine)
        if not data:
            continue
        label = ENGINE_LABELS[engine]
        idle, hop, sus, fan = data.get("idle"), data.get("hop"), data.get("sustained"), data.get("fanout") or {}
        lines.append(f"**{label}** ({data['workers']}):")
        if idle and hop and sus:
            lines += _latency_notes(idle, hop, sus)
        if fan and "error" not in fan:
            lines += _fanout_notes(fan)
    return lines


def _latency_notes(idle: dict[str, Any], hop: dict[str, Any], sus: dict[str, Any]) -> list[str]:
    return [
        f"- idle (ms, p50 / p99): emit -> run created and task queued (engine) {idle['created_ms_p50']:.2f} / "
        f"{idle['created_ms_p99']:.2f}; queued -> task started (queue + worker) {idle['dispatch_ms_p50']:.2f} / "
        f"{idle['dispatch_ms_p99']:.2f}; task started -> run succeeded {idle['finish_ms_p50']:.2f} / "
        f"{idle['finish_ms_p99']:.2f}; emit -> run succeeded {idle['succeeded_ms_p50']:.2f} / "
        f"{idle['succeeded_ms_p99']:.2f}.",
        f"- hop (ms, p50 / p99): a done -> b queued (engine) {hop['engine_ms_p50']:.2f} / {hop['engine_ms_p99']:.2f}; "
        f"b queued -> b started (queue + worker) {hop['pickup_ms_p50']:.2f} / {hop['pickup_ms_p99']:.2f}; "
        f"max hop {hop['hop_ms_max']:.2f}.",
        f"- sustained: {sus['runs']:,} runs in {sus['seconds']:.2f} s; {sus['engine_commits']:,} engine commits; "
        f"background (idle) {sus['background_commands_per_s']:,.0f} commands/s; commands per run: "
        + ", ".join(f"{k} {v}" for k, v in sus["commands_per_run_by_command"].items()) + ".",
    ]


def _fanout_notes(fan: dict[str, Any]) -> list[str]:
    lines = [
        f"- fan-out ({fan['items']:,} items): emit -> items task done {fan['emit_to_items_done_s']:.2f} s; "
        f"items done -> first item queued {fan['items_done_to_first_item_queued_ms']:.0f} ms (all queued "
        f"within {fan['items_queued_spread_ms']:.0f} ms); first item queued -> first item started "
        f"{fan['first_item_queued_to_started_ms']:,.0f} ms (the engine's commit that queues every item); first "
        f"item started -> last item done {fan['item_runs_per_s_first_started_to_last_done']:,.0f} items/s; last "
        f"item done -> fan-in queued {fan['last_item_done_to_fan_in_queued_ms']:.0f} ms, -> started "
        f"{fan['fan_in_queued_to_started_ms']:.0f} ms later.",
        f"- fan-out engine: {fan['engine_commits']:,} commits for {fan['results_records']:,} results records "
        f"({fan['records_per_item']:.1f} per item, {fan['records_per_engine_commit'] or 0:,.0f} per commit); "
        f"{fan['engine_ms_per_commit_wall'] or 0:,.1f} ms per commit (wall), {fan['engine_cpu_ms_per_commit'] or 0:,.1f} "
        f"ms engine CPU per commit; redis time per run-read EVAL {_num(fan['redis_usec_per_read_runs_eval'], 0)} us; "
        f"at most {fan['max_results_not_yet_read']:,} records written but not yet read by the engine, "
        f"{fan['max_jobs_queued']:,} jobs queued.",
        "- fan-out commands per item: " + ", ".join(f"{k} {v}" for k, v in fan["commands_per_item_by_command"].items())
        + "; redis us per item by command: "
        + ", ".join(f"{k} {v}" for k, v in fan["redis_usec_per_item_by_command"].items()) + ".",
    ]
    timeline = [t for t in fan.get("timeline") or [] if t["t_s"] >= 1.0]
    if timeline:
        lines.append("- fan-out timeline, every 2 s (time; results records the engine read; engine commits in the "
                     "interval, ms each; cores busy engine / workers / redis / other processes): " + "; ".join(
                         f"{t['t_s']:.0f} s: {t['records_read']:,} rec, {t['engine_commits']:.0f} commits"
                         + (f" ({t['ms_per_commit']:.0f} ms)" if t["ms_per_commit"] else "")
                         + f", {t['engine_cores']:.2f}/{t['worker_cores']:.2f}/{t['redis_cores']:.2f}/"
                         f"{t.get('other_cores') or 0:.2f}" for t in timeline))
    return lines


def ingest_table(results: dict[str, Any]) -> list[str]:
    orch = results["orch"]
    ingest = orch["ingest"]
    rows = [
        (f"ingest, Client.emit_many, {ingest['chunk']:,}/call (events/s)", _num(ingest["events_per_s"]),
         _target(ingest["events_per_s"] >= 50_000, ">= 50,000/s"), ""),
        ("Redis commands per event (ingest)", _num(ingest["commands_per_event"], 2), "reported", ""),
        (f"Redis memory per retained event ({ingest['event_json_bytes']} B JSON, with dedup key; bytes)",
         _num(ingest["memory_bytes_per_event"]), "reported", ""),
        *([_webhook_row(orch["webhook"])] if "webhook" in orch else []),
    ]
    lines = ["", "| ingest and API | orch | target |", "|---|---:|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} |" for r in rows]
    lines += ["", f"Ingest: CPU per event, client (this process) {ingest['cpu_us_per_event']['bench']:.1f} us, "
              f"redis-server {ingest['cpu_us_per_event']['redis']:.1f} us; memory per event "
              f"{ingest['memory_bytes_per_event']:.0f} B, of which the stream entry "
              f"{ingest['memory_bytes_per_event_stream_entry']:.0f} B (the rest: its dedup key). "
              "Redis commands per event: "
              + ", ".join(f"{k} {v}" for k, v in ingest["commands_per_event_by_command"].items()) + "."]
    lines += [_webhook_note(orch["webhook"])] if "webhook" in orch else []
    return lines


def peers_note(results: dict[str, Any]) -> list[str]:
    peers = results.get("peers") or []
    if not peers:
        return ["", f"Peers: {results.get('peers_error') or 'skipped (--skip-peers)'}."]
    out = []
    for row in peers:
        if "error" in row:
            out.append(f"{row['peer']}: error: {row['error']}")
        else:
            out.append(f"{PEER_LABELS.get(row['peer'], (row['peer'], ''))[0]} {row['tasks']:,} tasks")
    return ["", "Peers (../shared/peers/run.sh, 2 worker processes, same no-op task, same N; RQ fork: N/5): "
            + "; ".join(out) + "."]


def maintenance_table(results: dict[str, Any]) -> list[str]:
    """One engine maintenance pass with few and with many dedup keys and retained finished runs."""
    m = results["orch"]["maintenance"]
    small, large = m["small"], m["large"]

    def size(data: dict[str, Any]) -> str:
        return f"{data['dedup_keys']:,} dedup keys, {data['finished_runs']:,} finished runs"

    def row(metric: str, field: str, digits: int, ratio: str = "–") -> str:
        return f"| {metric} | {_num(small[field], digits)} | {_num(large[field], digits)} | {ratio} |"

    flat = m["time_ratio"] <= 1.5
    lines = ["", f"| maintenance pass, Engine.maintain(force=True) | {size(small)} | {size(large)} | large / small |",
             "|---|---:|---:|---:|",
             row(f"time per pass, median of {small['passes']} (ms)", "ms_per_pass_median", 2,
                 _target(flat, f"{m['time_ratio']:.2f}x (flat: <= 1.5x)")),
             f"| time per pass, min / max (ms) | {small['ms_per_pass_min']:.2f} / {small['ms_per_pass_max']:.2f} "
             f"| {large['ms_per_pass_min']:.2f} / {large['ms_per_pass_max']:.2f} | – |",
             row("engine CPU per pass, median (ms; this process)", "engine_cpu_ms_per_pass_median", 2,
                 f"{m['cpu_ratio']:.2f}x"),
             row("Redis server time per pass (us, INFO commandstats)", "redis_us_per_pass", 0,
                 f"{m['redis_time_ratio']:.2f}x"),
             row("Redis commands per pass", "commands_per_pass", 1),
             row("round trips per pass (INFO total_reads_processed)", "round_trips_per_pass", 1),
             row("Redis used_memory (MB)", "used_memory_mb", 1, f"{m['memory_ratio']:.1f}x"),
             row("keys in Redis (DBSIZE)", "keys", 0)]
    lines += ["", f"Maintenance: {small['running_runs']} running runs at both sizes (the stall scan reads them "
              "each forced pass); commands per pass, large size: "
              + ", ".join(f"{k} {v:g}" for k, v in large["commands_per_pass_by_command"].items())
              + "; Redis us per pass by command, small / large: "
              + ", ".join(f"{k} {small['redis_us_per_pass_by_command'].get(k, 0):g} / {v:g}"
                          for k, v in large["redis_us_per_pass_by_command"].items()) + "."]
    return lines


def table(results: dict[str, Any]) -> str:
    orch = results["orch"]
    extra = maintenance_table(results) if "maintenance" in orch else []
    extra += matching_table(orch["matching"]) if "matching" in orch else []
    extra += capacity.capacity_table(orch["capacity"]) if "capacity" in orch else []
    extra += curves.curves_table(orch["curves"]) if "curves" in orch else []
    if not any(engine in orch for engine in ENGINES):  # --only ingest, webhook, maintenance, matching, capacity, curves
        hook = orch.get("webhook")
        lines = ["| metric | orch | target |", "|---|---:|---|", f"| {' | '.join(_webhook_row(hook)[:3])} |",
                 "", _webhook_note(hook)] if hook else []
        lines += ingest_table(results) if "ingest" in orch else []
        return "\n".join(lines + extra).strip("\n")
    lines = main_table(results) + peers_note(results) + limits_table(results) + notes(results)
    return "\n".join(lines + (ingest_table(results) if "ingest" in orch else []) + extra)



def meta(args: argparse.Namespace, redis_version: str) -> dict[str, Any]:
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "redis": redis_version, "args": vars(args), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "orch_env": {k: v for k, v in os.environ.items() if k.startswith("ORCH_")}}


# -- main ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run (10,000 events, 30 samples, N=300)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (table on stderr)")
    ap.add_argument("--skip-peers", action="store_true", help="do not measure the peers")
    ap.add_argument("--peers", default=None,
                    help=f"peers to measure: all (= {ALL_PEERS}; the default), rq-simple (the default with "
                         "--quick) or a comma-separated list")
    ap.add_argument("--events", type=int, help="ingest: events to emit (default 100,000; quick 10,000)")
    ap.add_argument("--chunk", type=int, default=5000, help="ingest: events per emit_many call (default 5,000)")
    ap.add_argument("--hook-requests", type=int,
                    help="webhook: signed requests to POST /hooks/github (default 20,000; quick 3,000)")
    ap.add_argument("--hook-connections", type=int, default=16,
                    help="webhook: concurrent keep-alive connections (default 16)")
    ap.add_argument("--api-workers", type=int, default=2,
                    help="webhook: `orch api --workers N`, API processes sharing the port (default 2: both cores)")
    ap.add_argument("--only", choices=["ingest", "webhook", "orch", "fanout", "maintenance", "matching", "capacity",
                                           "curves"], default=None,
                    help="run some phases only: ingest (Client.emit_many alone, events/s), webhook (orch api alone, signed requests/s), orch (the engine "
                         "and worker phases, no ingest or webhook), fanout (the fan-out phase alone), "
                         "maintenance (one engine maintenance pass, few vs many dedup keys and finished runs), "
                         "matching (rule matching, indexed vs naive, in this process), capacity (Redis memory, "
                         "commands and CPU per event, run, task and queued job: deploy/CAPACITY.md), curves "
                         "(flat costs at three sizes: bench/curves.py)")
    curves.add_args(ap)
    ap.add_argument("--maintenance-dedup", type=int,
                    help="maintenance: dedup keys of the large size (default 1,000,000; quick 100,000)")
    ap.add_argument("--maintenance-runs", type=int,
                    help="maintenance: finished runs of the large size (default 100,000; quick 10,000)")
    ap.add_argument("--samples", type=int, help="idle latency samples (default 200; quick 30)")
    ap.add_argument("--hops", type=int, help="hop latency: two-task chain runs (default 200; quick 30)")
    ap.add_argument("--n", type=int, help="sustained: events emitted at once, also the peers' N (default 2,000)")
    ap.add_argument("--fanout", type=int, help="fan-out: items of the one mapped run (default 10,000; quick 1,000)")
    ap.add_argument("--fanout-rq", type=int,
                    help="fan-out items with --engine rq workers (default: as --fanout; 0 skips it)")
    ap.add_argument("--fanout-limit", type=float, default=240.0,
                    help="fan-out: seconds after which an unfinished run is reported as skipped (default 240)")
    ap.add_argument("--engines", default="fast,rq",
                    help="worker engines to measure: fast (orch worker), rq (orch worker --engine rq); default both")
    ap.add_argument("--workers", type=int, default=2, help="orch worker processes (default 2, like the peers)")
    ap.add_argument("--pool", action="store_true",
                    help="fast path as one `orch worker --concurrency N` pool instead of N `orch worker` processes")
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


def run_phases(stack: Stack, args: argparse.Namespace, sizes: dict[str, int], engines: list[str]) -> dict[str, Any]:
    """The phases `--only` asks for (every one by default), in order; their results by phase."""
    if args.only == "webhook":
        return {"webhook": phase_webhook(stack, sizes["hook_requests"], args.hook_connections, args.api_workers)}
    if args.only == "ingest":
        return {"ingest": phase_ingest(stack, sizes["events"], args.chunk)}
    if args.only == "maintenance":
        return {"maintenance": phase_maintenance(stack, sizes)}
    if args.only == "capacity":
        return {"capacity": phase_capacity(stack, args)}
    if args.only == "curves":
        return {"curves": phase_curves(stack, args)}
    out: dict[str, Any] = {}
    if args.only is None:
        out["ingest"] = phase_ingest(stack, sizes["events"], args.chunk)
        out["webhook"] = phase_webhook(stack, sizes["hook_requests"], args.hook_connections, args.api_workers)
    for engine in engines:
        stack.tag = f"{engine}-"
        out[engine] = phase_orch(stack, args, sizes, engine)
    stack.stop_orch()
    if args.only is None:
        out["maintenance"] = phase_maintenance(stack, sizes)
        out["matching"] = phase_matching(log)
        out["capacity"] = phase_capacity(stack, args)
        out["curves"] = phase_curves(stack, args)
    return out


def measure(args: argparse.Namespace, sizes: dict[str, int], results: dict[str, Any]) -> None:
    if args.only == "matching":  # pure: no Redis, no processes
        results["meta"] = meta(args, "")
        results["orch"] = {"matching": phase_matching(log)}
        return
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or any(e not in ENGINES for e in engines):
        raise BenchError(f"--engines: choose among {', '.join(ENGINES)}, not {args.engines!r}")
    stack = Stack()
    if args.profile:
        stack.profile_dir = RESULTS / f"profile-{results['stamp']}"
        stack.profile_dir.mkdir(parents=True, exist_ok=True)
    failed = False
    try:
        stack.start_redis()
        results["meta"] = meta(args, stack.redis_version)
        log(f"bench: redis-server {stack.redis_version} at {stack.url} (data in {stack.tmp})")
        results["orch"] = run_phases(stack, args, sizes, engines)
        if stack.profile_dir is not None:
            for path in sorted(stack.profile_dir.glob("*engine-*.prof")):
                show_profile(path)
    except BenchError:
        failed = True
        raise
    finally:
        stack.close(keep_logs=args.keep_logs or failed)
        if args.keep_logs or failed:
            log(f"bench: process logs kept in {stack.tmp}")
    if args.skip_peers or args.only in ("ingest", "webhook", "fanout", "maintenance", "capacity", "curves"):
        return
    peers = args.peers or ("rq-simple" if args.quick else "all")
    only = ALL_PEERS if peers == "all" else peers
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
    if args.fanout is not None and args.fanout_rq is None:
        args.fanout_rq = args.fanout
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
    load = results.get("meta", {}).get("loadavg_start")
    report = (f"{table(results)}\n\nWall time: {results['seconds']:.0f} s; load average at the start "
              f"{' / '.join(map(str, load or []))} (1 / 5 / 15 min). Saved {path.relative_to(ROOT)}.")
    if args.json:
        log(report)
        print(json.dumps(results, indent=2))
    else:
        print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
