"""Worker heartbeats: who is alive, what it runs, since when.

Every worker keeps `<p>:worker:<name>` (a hash: host, pid, queues, state, current job, run, node and
its start and timeout, jobs done) alive with a TTL of `worker_heartbeat_ttl_s`, refreshed every
`worker_heartbeat_s` by a background thread, and its name in the `<p>:workers` zset (score: last beat,
ms). A task still running after PUBLISH_AFTER_S is published at once (`orch workers`, the pool's
overrun check); shorter ones cost no extra beat. A long task does not stop the thread; a stopped or wedged process (SIGSTOP, a C call holding the
GIL) does, and its key expires: the engine then treats its tasks as lost and recover() hands back the
jobs it had claimed. A fast-path worker also keeps RQ's worker hash (`rq:worker:<name>`) so `rq info`
lists it; RQ's own worker (`--engine rq`) keeps that itself.

Each beat is one MULTI: EXISTS tells whether the key had lapsed meanwhile (the worker was declared
dead: it must hand back what it holds before taking more, see Worker._resync), and the run's cancel
marker says whether the running attempt was cancelled (the marker names the last cancelled attempt of
each node, so a retry's later attempts are not stopped by an earlier cancel).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
import redis
from redis.sentinel import SentinelConnectionPool
from rq.version import VERSION as RQ_VERSION
from rq.worker import BaseWorker
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from orchestrator import health
from orchestrator.backoff import Backoff, RideOut
from orchestrator.errors import OrchestratorError
from orchestrator.sentinel import clone_sentinel_pool
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.workflows.lifecycle import cancels

__all__ = ["Activity", "Heartbeat", "WorkerNameTaken", "clone_client", "default_name"]

log = logging.getLogger(__name__)

PUBLISH_AFTER_S = 0.25  # a task running this long is published at once, not at the next beat


class WorkerNameTaken(OrchestratorError):
    """Another live worker already uses this name."""


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def clone_client(client: redis.Redis, **overrides: Any) -> redis.Redis:
    """A client to the same server with a pool of its own (for another thread, or after a fork)."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        clone = redis.Redis(connection_pool=clone_sentinel_pool(pool, **overrides))
    else:
        kwargs = {**pool.connection_kwargs, **overrides}
        clone = redis.Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs))
    clone.auto_close_connection_pool = True  # the pool is the clone's own: close() disconnects it
    return clone


@dataclass
class Activity:
    """What a worker is doing, written by its main thread, read by the heartbeat thread."""

    state: str = "idle"  # idle | busy | stopping
    job: str = ""
    run: str = ""
    node: str = ""
    task: str = ""
    attempt: int = 0
    job_started_at: float = 0.0  # epoch seconds
    job_timeout_s: float = 0.0
    done: int = 0
    failed: int = 0
    busy_s: float = 0.0

    def begin(self, job_id: str, payload: dict[str, Any], task: str, timeout_s: float) -> None:
        attempt = payload.get("attempt")
        self.run, self.node = str(payload.get("run", "")), str(payload.get("node", ""))
        self.task, self.attempt = task, attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0
        self.job_started_at, self.job_timeout_s = time.time(), timeout_s
        self.job, self.state = job_id, "busy"

    def end(self, ok: bool) -> None:
        self.busy_s += max(0.0, time.time() - self.job_started_at)
        if ok:
            self.done += 1
        else:
            self.failed += 1
        self.job, self.run, self.node, self.task, self.attempt = "", "", "", "", 0
        self.job_started_at = self.job_timeout_s = 0.0
        if self.state == "busy":
            self.state = "idle"

    def remaining_s(self) -> float:
        """What is left of the running task's timeout (0 when idle): the main loop may be silent that long."""
        if self.state != "busy" or not self.job_started_at:
            return 0.0
        return max(0.0, self.job_started_at + self.job_timeout_s - time.time())

    def fields(self) -> dict[str, Any]:
        return {"state": self.state, "job": self.job, "run": self.run, "node": self.node, "task": self.task,
                "attempt": self.attempt, "job_started_at": self.job_started_at,
                "job_timeout_s": self.job_timeout_s, "jobs_done": self.done, "jobs_failed": self.failed}


class Heartbeat:
    """Registers a worker, refreshes its heartbeat from a thread, and forgets it on request."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings, name: str, queues: list[str], *,
                 engine: str, pool: str = "", rq_registration: bool = True,
                 on_cancel: Callable[[str, str, int], object] | None = None) -> None:
        self._client = clone_client(client)  # its own connections: the main thread may be blocked in BLMOVE
        self._keys = keys
        self._name = name
        self._queues = queues
        self._rq_queues = [keys.queue_name(q) for q in queues]
        self._period_s = settings.worker_heartbeat_s
        self._ttl_ms = max(1, int(settings.worker_heartbeat_ttl_s * 1000))
        # silent this long, the worker may have been presumed dead (its key about to expire, or expired)
        ttl_s = settings.worker_heartbeat_ttl_s
        self._stale_s = min(ttl_s, max(ttl_s / 2, 2 * settings.worker_heartbeat_s))
        self._rq = rq_registration
        self._static = {"name": name, "host": socket.gethostname(), "pid": os.getpid(), "queues": ",".join(queues),
                        "engine": engine, "pool": pool, "started_at": time.time()}
        self.activity = Activity()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_ok = 0.0  # monotonic time of the last beat Redis accepted
        self.lapsed = False  # a beat found the key gone: the worker was declared dead meanwhile
        self._on_cancel = on_cancel  # told (run, node, attempt) of a running attempt whose run was cancelled

    @property
    def key(self) -> str:
        return self._keys.worker(self._name)

    def previous_owner_alive(self) -> bool:
        """Whether a live worker elsewhere holds this name (a dead one on this host, or this process, does not)."""
        host, pid = self._client.hmget(self.key, ["host", "pid"])
        if host is None:
            return False
        if host.decode() != self._static["host"]:
            return True
        owner = int(pid or 0)
        return owner != os.getpid() and owner > 0 and psutil.pid_exists(owner)

    def start(self) -> None:
        """Register (first beat, RQ's worker registry) and start the heartbeat thread."""
        if self._rq:
            rq_key = BaseWorker.redis_worker_namespace_prefix + self._name
            pipe = self._client.pipeline()
            pipe.delete(rq_key)
            pipe.hset(rq_key, mapping={"birth": _rq_now(), "queues": ",".join(self._rq_queues), "pid": os.getpid(),
                                       "hostname": self._static["host"], "ip_address": "", "version": RQ_VERSION,
                                       "python_version": sys.version})
            pipe.sadd(BaseWorker.redis_workers_keys, rq_key)
            for rq_queue in self._rq_queues:
                pipe.sadd(WORKERS_BY_QUEUE_KEY % rq_queue, rq_key)
            pipe.execute()
        self.beat()
        health.require("heartbeat", self.lapse)  # readiness of this process (orchestrator/health.py)
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{self._name}", daemon=True)
        self._thread.start()

    def beat(self) -> bool:
        """Refresh the heartbeat now; False if it had lapsed (the worker was presumed dead)."""
        activity = self.activity.fields()
        run, node, attempt = str(activity["run"]), str(activity["node"]), int(activity["attempt"])
        pipe = self._client.pipeline()
        pipe.exists(self.key)
        pipe.hget(self._keys.cancel(run or "-"), node or "-")
        pipe.hset(self.key, mapping={**self._static, **activity, "heartbeat_at": time.time()})
        pipe.pexpire(self.key, self._ttl_ms)
        pipe.zadd(self._keys.workers, {self._name: int(time.time() * 1000)})
        if self._rq:
            rq_key = BaseWorker.redis_worker_namespace_prefix + self._name
            pipe.hset(rq_key, mapping={"last_heartbeat": _rq_now(), "state": activity["state"],
                                       "current_job": activity["job"], "successful_job_count": activity["jobs_done"],
                                       "failed_job_count": activity["jobs_failed"],
                                       "total_working_time": self.activity.busy_s})
            pipe.pexpire(rq_key, self._ttl_ms)
        replies = pipe.execute()
        existed = bool(replies[0])
        marker = int(replies[1]) if replies[1] is not None and replies[1].isdigit() else None
        if run and cancels(marker, attempt) and self._on_cancel is not None:
            self._on_cancel(run, node, attempt)
        if not existed and self._last_ok:
            self.lapsed = True
            log.warning("worker %s: its heartbeat had expired (was the process stopped?); it was presumed dead",
                        self._name)
        self._last_ok = time.monotonic()
        return existed

    def needs_resync(self) -> bool:
        """True when the worker may have been presumed dead: it must hand back what it holds before going on."""
        return self.lapsed or time.monotonic() - self._last_ok > self._stale_s

    def lapse(self) -> str | None:
        """Why this worker may have been presumed dead (a readiness condition), or None."""
        return "heartbeat lapsed or not accepted lately: handing back its jobs" if self.needs_resync() else None

    def resynced(self) -> None:
        self.beat()
        self.lapsed = False

    def stop(self) -> None:
        """Stop the thread (the heartbeat key itself is removed by release.lua in 'gone' mode)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._rq:
            try:
                pipe = self._client.pipeline()
                for rq_queue in self._rq_queues:
                    pipe.srem(WORKERS_BY_QUEUE_KEY % rq_queue, BaseWorker.redis_worker_namespace_prefix + self._name)
                pipe.execute()
            except redis.RedisError:
                pass
        self._client.close()

    def _loop(self) -> None:
        last, published = time.monotonic(), ""
        # counted in orch_redis_errors_total{role="heartbeat"}; beats keep their period (a longer wait would
        # let the key lapse), so the backoff's delay is not used
        ride = RideOut("heartbeat", log, self._keys, Backoff(self._period_s, self._period_s, jitter=0.0),
                       repeat_warnings=False)  # a beat every period: one warning per outage, and "Redis is back"
        while not self._stop.wait(min(self._period_s, PUBLISH_AFTER_S)):  # a cancel is seen within a period
            job = self.activity.job
            news = job and job != published and time.time() - self.activity.job_started_at >= PUBLISH_AFTER_S
            if not news and time.monotonic() - last < self._period_s:
                continue
            last = time.monotonic()
            try:
                self.beat()
                published = job
                ride.ok(self._client)
            except redis.RedisError as exc:
                ride.failed(exc)


def _rq_now() -> str:
    from rq.utils import now, utcformat

    return utcformat(now())

