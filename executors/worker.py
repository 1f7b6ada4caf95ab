"""`orch worker`: runs orch's RQ jobs, on the fast path (default) or in RQ's own SimpleWorker.

The fast path (engine "fast") claims jobs with the reliable-queue pattern and writes RQ's bookkeeping
in one round trip per job (fastpath.py), heartbeats from a thread (heartbeat.py), can run the tasks of
chosen queues in a forked child (forking.py), and hands back what it holds when it stops or finds it
was presumed dead. Engine "rq" is RQ's stock SimpleWorker with orch's job class, plus the heartbeat.

Signals: the first SIGTERM or SIGINT finishes the current task, puts the jobs claimed but not started
back at the front of their queues, deregisters and returns; a second one stops at once: the task is
interrupted (a forked child is killed), reported failed (WorkerLost) and its job marked failed in RQ,
so the engine retries it. SIGALRM only ever stops the running task (its time limit or cancel, see
alarm.py); at any other moment the fast worker ignores it. The "rq" engine (`OrchWorker`, `run_rq`) lives
in rqworker.py; `run_worker` here picks the engine.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import redis

from orchestrator import health
from orchestrator.backoff import PASSING, Backoff, RideOut, classify
from orchestrator.catalog.fleet import FinishedCounter
from orchestrator.errors import OrchestratorError
from orchestrator.project import Project
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.lua import Scripts
from orchestrator.workflows.records import RecordKind, TaskRecord

from . import forking
from .alarm import handling_alarms
from .attempt import stop_cancelled
from .catalog import Catalog, JobPayload
from .fastpath import ClaimedJob, Ledger, queue_key
from .heartbeat import Heartbeat, WorkerNameTaken, clone_client, default_name
from .idle import IdleWait
from .jobs import OrchJob
from .recovery import LOST, release_worker, report_failed
from .refresh import deploying
from .rqworker import OrchWorker, run_rq
from .runner import WorkerContext, install

__all__ = ["ENGINES", "FastWorker", "ForcedStop", "OrchWorker", "PipelinedContext", "run_worker"]

log = logging.getLogger(__name__)

ENGINES = ("fast", "rq")
MAX_BATCH = 32          # most jobs a busy worker claims in one round trip
BATCH_WINDOW_S = 0.05   # ... and at most about this much work held locally, by the recent job durations


class ForcedStop(BaseException):
    """A second stop signal: leave now (a BaseException, so a task's `except Exception` does not catch it)."""


class FastWorker:
    """The fast-path worker loop for one process."""

    def __init__(self, client: redis.Redis, settings: Settings, queues: list[str], name: str, *,
                 fork_queues: tuple[str, ...] = (), pool: str = "", prefetch: int = 0) -> None:
        self._client = client
        self._prefetch = prefetch  # jobs claimed at a time; 0: adaptive (about BATCH_WINDOW_S of work)
        self._settings = settings
        self._keys = keys = Keys(settings.key_prefix)
        self._name = name
        self._queues = queues
        self._rq_queues = [keys.queue_name(q) for q in queues]
        self._queue_keys = [queue_key(q) for q in self._rq_queues]
        self._forked = {keys.queue_name(q) for q in fork_queues}
        self._scripts = Scripts(client)
        self.ledger = Ledger(client, self._scripts, name, keys.worker_claimed(name),
                             result_ttl_s=settings.job_result_ttl_s, failure_ttl_s=settings.job_failure_ttl_s,
                             counter=FinishedCounter(keys))
        self.heartbeat = Heartbeat(client, keys, settings, name, queues, engine="fast", pool=pool,
                                   on_cancel=stop_cancelled)
        self.context: PipelinedContext | None = None  # the runner's, installed by run_worker
        self._buffer: deque[ClaimedJob] = deque()
        self._ride = RideOut("worker", log, keys, Backoff(max_s=30.0))
        self._idle = IdleWait(client, self._queue_keys, keys.worker_claimed(name), keys)
        self._avg_job_s = 1.0  # claim one job at a time until jobs prove short
        self._stopping = False
        self._next_maintenance = 0.0

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def run(self, burst: bool = False) -> bool:
        """Serve the queues until stopped (or, with `burst`, until they are empty). True if any job ran.

        Raises ForcedStop, after deregistering, when a second stop signal interrupted it."""
        with handling_alarms():  # for its whole life: a late or stray SIGALRM is ignored, never fatal
            return self._serve(burst)

    def _serve(self, burst: bool) -> bool:
        self._register_riding_out()
        worked = forced = False
        try:
            with self._signals():
                while not self._stopping:
                    health.tick("worker", 1.0, self.heartbeat.activity.remaining_s)  # orchestrator/health.py
                    try:
                        ran = self._step(burst)
                        if ran is None:
                            break
                        worked = worked or ran
                        self._ride.ok(self._client)
                    except redis.RedisError as exc:  # away, OOM, READONLY, BUSY...: hand back, wait, go on
                        self._ride_out(exc)
        except ForcedStop:
            forced = True
            raise
        finally:
            self._leave(forced)
        return worked

    def _register_riding_out(self) -> None:
        """Register, riding out what passes (a failover, LOADING, NOREPLICAS) as the loop would: a worker
        started with its Redis must not exit into a restart loop. Nothing is held yet, so a stop signal
        meanwhile simply ends the process."""
        while True:
            try:
                self._register()
                return
            except redis.RedisError as exc:
                if classify(exc) not in PASSING:
                    raise
                time.sleep(self._ride.failed(exc))

    def _register(self) -> None:
        if self.heartbeat.previous_owner_alive():
            raise WorkerNameTaken(f"a live worker is already named {self._name!r}; choose another --name")
        # a dead worker of the same name (a restart) may have left jobs: hand them back, report its started ones
        release_worker(self._client, self._keys, self._scripts, self._name,
                       f"worker {self._name} died while running this task (it restarted)")
        self.heartbeat.start()
        log.info("worker %s: serving queues %s (fast path%s)", self._name, ", ".join(self._queues),
                 f"; forking for {', '.join(sorted(self._forked))}" if self._forked else "")

    def _leave(self, forced: bool) -> None:
        self.heartbeat.activity.state = "stopping"
        self._idle.close()  # the waiters stop claiming before the claimed list is released
        self._buffer.clear()
        client = clone_client(self._client, socket_timeout=5) if forced else self._client
        reason = f"worker {self._name} was stopped at once while running this task"
        try:
            try:  # the last finish and record (a fresh connection if interrupted), written while still alive
                self.ledger.send(client=client)
            finally:
                self.heartbeat.stop()  # before the release, which removes the heartbeat key for good
            requeued = release_worker(client, self._keys, self._scripts, self._name, reason, error_type=LOST)
            if requeued:
                log.info("worker %s: %d claimed job(s) back in their queues", self._name, len(requeued))
        except redis.RedisError as exc:
            log.warning("worker %s: could not deregister (%s); recover() will hand back its jobs", self._name, exc)
        finally:
            if forced:
                client.close()
        log.info("worker %s: stopped%s", self._name, " at once" if forced else "")

    # -- the loop --------------------------------------------------------------------------------------------------

    def _step(self, burst: bool) -> bool | None:
        """Run the next job: True if one ran, False if none came, None when the queues are empty in burst mode."""
        if self.heartbeat.needs_resync() or self._idle.lost_reply:
            self._resync()
        claimed = self._next(burst)
        if claimed is None:
            return None if burst else False
        self._perform(claimed)
        if time.monotonic() >= self._next_maintenance:
            self._maintain()
        return True

    def _next(self, burst: bool) -> ClaimedJob | None:
        while not self._buffer:
            self._buffer.extend(self.ledger.claim(self._queue_keys, self._batch_size()))
            if not self.ledger.unreadable:
                break  # else all it claimed was failed unread: claim again before calling the queues empty
        if not self._buffer and not burst:
            self.heartbeat.activity.state = "idle"
            if len(self._queue_keys) == 1:  # BLMOVE, its job's hash and a top-up: one round trip
                self._buffer.extend(self.ledger.wait(self._queue_keys[0], self._idle.block_s, self._queue_keys,
                                                     self._batch_size() - 1))
            else:
                self._hold(self._idle.wait())
        if self._buffer:
            self._hold(self._idle.pause())
            return self._buffer.popleft()
        return None

    def _hold(self, job_ids: list[str]) -> None:
        """Take the jobs an idle wait delivered; after the last, top up the buffer in the same round trip."""
        for job_id in job_ids:  # (several queues: their waiter threads deliver ids)
            top_up = self._batch_size() - 1 - len(self._buffer) if job_id == job_ids[-1] else 0
            self._buffer.extend(self.ledger.fetch(job_id, self._queue_keys, max(0, top_up)))

    def _batch_size(self) -> int:
        if self._prefetch:
            return self._prefetch
        return max(1, min(MAX_BATCH, int(BATCH_WINDOW_S / max(self._avg_job_s, 1e-4))))

    def _perform(self, claimed: ClaimedJob) -> None:
        job = claimed.job
        payload = claimed.payload
        task, timeout_s = self.context.catalog.describe(payload) if self.context else ("", 0.0)
        forked = claimed.origin in self._forked
        if forked:  # the child reports for itself: the start must be in Redis before it forks
            self.ledger.send(self.ledger.start_commands(claimed, timeout_s))
        else:  # sent with the runner's `started` record (WorkerContext.report -> Ledger.report)
            self.ledger.stage(self.ledger.start_commands(claimed, timeout_s))
        self.heartbeat.activity.begin(claimed.id, payload, task, timeout_s)
        began = time.monotonic()
        error: str | None = None
        try:
            func = job.func  # OrchJob: the entry point or TaskError
            _ = (job.success_callback, job.failure_callback, job.stopped_callback)  # OrchJob refuses any
            if forked:
                error = self._perform_forked(claimed, lambda: self._in_child(func, job), timeout_s)
            else:
                func(*job.args, **job.kwargs)
        except redis.RedisError as exc:
            error = "".join(traceback.format_exception(exc))
            if not forked and not self.ledger.started_sent:
                raise  # it never started: still only claimed, handed back once Redis is back (_ride_out)
        except Exception as exc:
            error = "".join(traceback.format_exception(exc))
            log.debug("job %s failed: %s", claimed.id, exc)
        finally:
            self.heartbeat.activity.end(error is None)
        duration_s = time.monotonic() - began
        self._avg_job_s = 0.8 * self._avg_job_s + 0.2 * duration_s
        self.ledger.finish(claimed, error)

    def _in_child(self, func: Any, job: OrchJob) -> None:
        if self.context is not None:
            self.context.ledger = None  # the child reports on its own connection, at once
        func(*job.args, **job.kwargs)

    def _perform_forked(self, claimed: ClaimedJob, call: Any, timeout_s: float) -> str | None:
        outcome = forking.run_forked(call, timeout_s)
        named = JobPayload.identify(claimed.payload)
        if outcome.report and named is not None:
            report_failed(self._client, self._keys, self._name, [named], outcome.error or "", outcome.error_type)
        return outcome.error

    def _maintain(self) -> None:
        self._next_maintenance = time.monotonic() + self._settings.worker_maintenance_interval_s
        self.ledger.trim_registries(self._rq_queues)

    def _resync(self) -> None:
        """Presumed dead (heartbeat lapsed) or back from a Redis outage: hand back all held jobs, beat again."""
        self.ledger.send()
        self._idle.pause()
        self._idle.lost_reply = False  # what it lost is handed back below; a later loss is seen again
        self._buffer.clear()
        requeued, _ = self.ledger.release(self._keys, "own")
        self.heartbeat.resynced()
        if requeued:
            log.warning("worker %s: handed back %d job(s) it held but had not started", self._name, len(requeued))

    def _ride_out(self, exc: redis.RedisError) -> None:
        """Wait until Redis takes the worker's bookkeeping again, handing back what it held."""
        delay_s = self._ride.failed(exc)
        while not self._stopping:
            health.tick("worker", delay_s)  # riding out Redis is progress (orchestrator/health.py)
            time.sleep(delay_s)
            try:
                self._resync()
                self._ride.ok(self._client)
                return
            except redis.RedisError as again:
                delay_s = self._ride.failed(again)

    # -- signals ---------------------------------------------------------------------------------------------------

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in previous:
            signal.signal(sig, self._on_signal)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            log.warning("worker %s: second %s: stopping at once", self._name, signal.Signals(signum).name)
            forking.kill_current()
            raise ForcedStop()
        log.info("worker %s: %s: finishing the current task, then stopping (again: stop at once)", self._name,
                 signal.Signals(signum).name)
        self._stopping = True
        self.heartbeat.activity.state = "stopping"


@dataclass
class PipelinedContext(WorkerContext):
    """The runner's context in a fast-path worker: its records go out with the worker's own bookkeeping."""

    ledger: Ledger | None = None

    def report(self, record: TaskRecord) -> None:
        if self.ledger is None:  # a forked child reports on its own connection
            super().report(record)
            return
        self.ledger.report(self.keys.results, record.to_fields(), now=record.kind is RecordKind.STARTED)


def run_worker(client: redis.Redis, settings: Settings, project: Project, queues: list[str], *,
               burst: bool = False, name: str | None = None, engine: str = "fast",
               fork_queues: tuple[str, ...] = (), pool: str = "", prefetch: int = 0,
               refresh: Callable[[], Project | None] | None = None) -> bool:
    """Serve `queues` until stopped (or, with `burst`, until they are empty). True if any job ran. With
    `refresh` (executors/refresh.py), a job naming a workflow version this worker lacks loads the project
    again when its files changed."""
    if engine not in ENGINES:
        raise OrchestratorError(f"unknown worker engine {engine!r} (engines: {', '.join(ENGINES)})")
    if fork_queues and engine != "fast":
        raise OrchestratorError("--fork-queues needs the fast engine (RQ's forking worker forks for every queue)")
    keys = Keys(settings.key_prefix)
    name = name or default_name()
    if not project.tasks:
        log.warning("worker %s: no tasks in %s/workflows: every job will fail (is --project / ORCH_PROJECT right?)",
                    name, project.root)
    catalog = Catalog((w.spec for w in project.workflows.values()), project.tasks, settings.task_timeout_s, refresh,
                      deploying(client, keys, settings.worker_deploy_grace_s))  # a reload on its way here
    if engine == "fast":
        worker = FastWorker(client, settings, queues, name, fork_queues=fork_queues, pool=pool, prefetch=prefetch)
        worker.context = PipelinedContext(client=client, keys=keys, catalog=catalog, worker=name,
                                          settings=settings, ledger=worker.ledger)
        install(worker.context)
        return worker.run(burst=burst)
    install(WorkerContext(client=client, keys=keys, catalog=catalog, worker=name, settings=settings))
    return run_rq(client, settings, keys, queues, name, burst, pool, catalog)
