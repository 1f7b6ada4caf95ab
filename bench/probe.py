"""Driving orch for the phases that run it: `orch engine` and its workers started and warmed up, events
emitted one at a time, and a Probe that reads run state on its own connection and counts its own
commands (they are not the product's cost).
"""

from __future__ import annotations

import argparse
import time
import uuid

import redis

from bench.common import (
    CHAIN_EVENT,
    CHAIN_RULE,
    EVENT_TYPE,
    FANOUT_EVENT,
    FANOUT_RULE,
    POLL_S,
    PREFIX,
    PROJECT,
    ROOT,
    RULE,
    SOURCE,
    BenchError,
    log,
)
from bench.stack import Stack
from orchestrator import Client
from orchestrator.state.keys import ENGINE_GROUP, Keys
from orchestrator.state.store import RunStore
from orchestrator.workflows.runs import Run, RunStatus, derive_run_id


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
