"""Phases 1 and 1b: `Client.emit_many` alone (events/s, memory and commands per event) and `orch api`
alone answering signed webhook requests (requests/s, latency), each under a key prefix of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import shutil
import socket
import time
import uuid
from typing import Any

import psutil
import redis

from bench.common import EVENT_TYPE, PROJECT, SOURCE, BenchError, free_port, log, pct
from bench.ingest_procs import emit_from_processes
from bench.stack import Stack, commands_between, per, stats
from orchestrator import Client, Event, Settings
from orchestrator.jsonutil import dumps
from orchestrator.state.keys import Keys

INGEST_PREFIX = "bench-ingest"
HOOK_PREFIX = "bench-hooks"  # the webhook phase's keys, dropped after it
HOOK_SECRET_ENV = "ORCH_BENCH_WEBHOOK_SECRET"


# -- phase 1: ingest -----------------------------------------------------------------------------------


def _drop_prefix(client: redis.Redis, prefix: str) -> None:
    for key in client.scan_iter(match=f"{prefix}:*", count=5000):
        client.unlink(key)


def phase_ingest(stack: Stack, events: int, chunk: int, processes: int = 2) -> dict[str, Any]:
    """`events` from one process, then from `processes` at once (bench/ingest_procs.py)."""
    one = _ingest_one_process(stack, events, chunk)
    redis_before = stack.cpu_seconds()["redis"]
    parallel = emit_from_processes(stack.url, INGEST_PREFIX, processes, events, chunk, _drop_prefix)
    parallel["redis_cpu_us_per_event"] = round((stack.cpu_seconds()["redis"] - redis_before) * 1e6
                                               / parallel["events"], 1)
    admin = redis.Redis.from_url(stack.url)
    _drop_prefix(admin, INGEST_PREFIX)
    admin.close()
    log(f"ingest: {one['events_per_s']:,.0f} events/s from one process, {parallel['events_per_s']:,.0f} from "
        f"{processes}")
    return {**one, "parallel": parallel}


def _ingest_one_process(stack: Stack, events: int, chunk: int) -> dict[str, Any]:
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


def phase_webhook(stack: Stack, requests: int, connections: int = 16, api_workers: int = 2,
                  api_role: str = "hooks") -> dict[str, Any]:
    """`orch api --role hooks --workers N` alone with one github-verified endpoint: signed requests/s until each
    is in the stream. The hooks role is the listener deploy/ exposes to the internet (no operator routes, no UI)."""
    project = stack.tmp / "hooks-project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns(".orch", "__pycache__"))
    (project / "rules" / "hooks.yaml").write_text(
        f"hooks:\n  - {{name: github, verify: github, secret_env: {HOOK_SECRET_ENV}}}\n")
    secret = uuid.uuid4().hex
    port = free_port()
    stack.start_orch("api", "--role", api_role, "--workers", str(api_workers),
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
        f"keep-alive connections to `orch api --role {api_role} --workers {api_workers}`")
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
            "api_cpu_cores_busy": round(api_cpu / elapsed, 2), "api_workers": api_workers, "api_role": api_role,
            "api_cpu_us_per_request": round(api_cpu * 1e6 / requests, 1)}


def _tree_cpu_s(process: psutil.Process) -> float:
    """User + system CPU seconds of `process` and its children (`orch api --workers`' copies)."""
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = each.cpu_times()
            total += times.user + times.system
    return total
