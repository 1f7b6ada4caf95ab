"""Phase 1, second part: `Client.emit_many` from several processes at once, as applications emit.

One Python process cannot keep Redis busy: `emit_many` returns once its events are in the stream, so the
client's CPU (validating and encoding each event) and Redis's (dedup and XADD) take turns. Applications
emit from many processes; this measures the rate Redis takes from `processes` emitters started together,
each a fresh interpreter (spawn) with its own Client, warmed before the clock starts.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from multiprocessing.synchronize import Barrier
from typing import Any

import redis

from bench.common import EVENT_TYPE, SOURCE, BenchError, log
from orchestrator import Client, Settings
from orchestrator.state.keys import Keys

__all__ = ["emit_from_processes"]

_START_TIMEOUT_S = 60.0


def _emitter(url: str, prefix: str, index: int, events: int, chunk: int, barrier: Barrier,
             cpu: Any) -> None:
    """One emitting process: warm its client, wait for the start, emit `events`, report its CPU seconds and
    when it finished."""
    with Client(settings=Settings(redis_url=url, key_prefix=prefix), source=SOURCE) as client:
        client.emit_many([{"type": EVENT_TYPE, "data": {"warm": index}}])  # loads the script, opens the pool
        barrier.wait(_START_TIMEOUT_S)  # all warmed: the parent drops the warm-up events
        barrier.wait(_START_TIMEOUT_S)  # the clock starts
        started = time.process_time()
        base = index * events
        for done in range(0, events, chunk):
            size = min(chunk, events - done)
            client.emit_many([{"type": EVENT_TYPE, "data": {"n": n}} for n in range(base + done, base + done + size)])
        cpu.put((time.process_time() - started, time.monotonic()))  # monotonic: one clock for every process


def emit_from_processes(url: str, prefix: str, processes: int, events: int, chunk: int,
                        drop: Any) -> dict[str, Any]:
    """`events` spread over `processes` emitters (at most one per event); `drop(client, prefix)` removes the
    keys under the prefix (the warm-up events)."""
    processes = max(1, min(processes, events))
    context = multiprocessing.get_context("spawn")
    barrier, cpu = context.Barrier(processes + 1), context.Queue()
    share = events // processes
    children = [context.Process(target=_emitter, args=(url, prefix, i, share, chunk, barrier, cpu), daemon=True)
                for i in range(processes)]
    for child in children:
        child.start()
    admin = redis.Redis.from_url(url)
    stream = Keys(prefix).events
    try:
        try:
            barrier.wait(_START_TIMEOUT_S)
            drop(admin, prefix)
            barrier.wait(_START_TIMEOUT_S)
        except threading.BrokenBarrierError:  # an emitter died or hung before the start
            raise BenchError(f"ingest, {processes} processes: an emitter did not start (exit codes "
                             f"{[child.exitcode for child in children]})") from None
        t0 = time.monotonic()
        while any(child.is_alive() for child in children):
            time.sleep(1.0)
            log(f"ingest, {processes} processes: {admin.xlen(stream):,}/{share * processes:,} events")
        in_stream = admin.xlen(stream)
    finally:
        for child in children:
            child.join(5)
            if child.is_alive():
                child.kill()
        admin.close()
    if in_stream != share * processes or any(child.exitcode for child in children):
        raise BenchError(f"ingest, {processes} processes: {in_stream:,} of {share * processes:,} events in the stream "
                         f"(exit codes {[child.exitcode for child in children]})")
    reports = [cpu.get(timeout=5) for _ in children]
    client_cpu, elapsed = sum(r[0] for r in reports), max(r[1] for r in reports) - t0
    return {"processes": processes, "events": share * processes, "seconds": round(elapsed, 3),
            "events_per_s": round(share * processes / elapsed, 1),
            "client_cpu_us_per_event": round(client_cpu * 1e6 / (share * processes), 1)}
