"""`orch worker --concurrency N`: one supervisor process and N worker processes.

Each worker is `orch worker` itself (a subprocess, with `--pool-name`), in its own session so a
terminal's Ctrl-C reaches only the supervisor, and dying with it (PR_SET_PDEATHSIG, as under `orch
dev`). The supervisor:

- restarts a worker that exits, after a backoff that doubles (0.5 s up to 30 s) while workers keep
  dying young, and hands back at once what the dead one held (release.lua), reporting the task it was
  running as failed (WorkerLost) so the engine retries it without waiting for the heartbeat to expire;
- reads its workers' heartbeats every second and SIGKILLs one whose current task has overrun its
  timeout by `grace_s` (a task stuck in C code, where the runner's SIGALRM cannot reach): that task is
  reported failed (TaskTimeout) and the worker restarted;
- forwards SIGTERM / SIGINT: the first lets every worker finish its task, a second stops them at once.
  It exits 0 when every worker did.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

import redis

from orchestrator import health
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.lua import Scripts

from .recovery import LOST, release_worker

__all__ = ["Pool"]

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
HEALTHY_AFTER_S = 30.0  # a worker that lived this long resets its slot's backoff
TICK_S = 0.1
CHECK_EVERY_S = 1.0


@dataclass
class Slot:
    index: int
    process: subprocess.Popen[bytes] | None = None
    name: str = ""
    started: float = 0.0
    due: float = 0.0
    backoff_s: float = 0.0
    overran: str = ""
    done: bool = False  # exited for good (burst mode, or the pool is stopping)
    exit_code: int | None = None


class Pool:
    """Supervises `concurrency` worker processes running `orch worker <child_args>`."""

    def __init__(self, client: redis.Redis, settings: Settings, child_args: list[str], concurrency: int, *,
                 grace_s: float, burst: bool = False, name: str = "") -> None:
        self._client = client
        self._keys = Keys(settings.key_prefix)
        self._scripts = Scripts(client)
        self._args = child_args
        self._grace_s = grace_s
        self._burst = burst
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._slots = [Slot(i) for i in range(concurrency)]
        self._signals = 0
        self._next_check = 0.0

    def run(self) -> int:
        """Run until stopped (or, in burst mode, until every worker finished); 0 if every worker exited 0."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        log.info("pool %s: starting %d worker process(es)", self.name, len(self._slots))
        health.require("workers", self._running)  # readiness: at least one worker process runs
        while True:
            health.tick("pool", TICK_S)  # liveness of `orch worker --concurrency N` (orchestrator/health.py)
            now = time.monotonic()
            for slot in self._slots:
                self._reap(slot, now)
                if not self._signals and not slot.done and slot.process is None and now >= slot.due:
                    self._start(slot)
            if all(slot.done for slot in self._slots):
                break
            if not self._signals and now >= self._next_check:
                self._next_check = now + CHECK_EVERY_S
                self._check_overruns()
            time.sleep(TICK_S)
        codes = [slot.exit_code for slot in self._slots]
        log.info("pool %s: stopped (worker exit codes %s)", self.name, codes)
        return 0 if all(code == 0 for code in codes) else 1

    def _running(self) -> str | None:
        alive = sum(slot.process is not None and slot.process.returncode is None for slot in self._slots)
        return None if alive else "no worker process running"

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        how = "finishing their tasks" if self._signals == 1 else "stopping them at once"
        log.info("pool %s: %s: %s", self.name, signal.Signals(signum).name, how)
        for slot in self._slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signal.SIGTERM)
            elif slot.process is None:
                slot.done, slot.exit_code = True, 0  # waiting for a restart: there is none now

    def _start(self, slot: Slot) -> None:
        env = {**os.environ, "ORCH_DEV_PARENT_PID": str(os.getpid())}  # the worker dies with its pool
        argv = [sys.executable, "-m", "orchestrator", "worker", *self._args, "--pool-name", self.name]
        slot.process = subprocess.Popen(argv, env=env, start_new_session=True)
        slot.name = f"{socket.gethostname()}-{slot.process.pid}"  # the worker's default name
        slot.started, slot.overran = time.monotonic(), ""
        log.info("pool %s: worker %d started (%s)", self.name, slot.index, slot.name)

    def _reap(self, slot: Slot, now: float) -> None:
        if slot.process is None or slot.process.poll() is None:
            return
        code = slot.process.returncode
        slot.process = None
        if code != 0:
            why = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            self._release(slot.name, slot.overran or f"worker process {slot.name} {why} while running this task",
                          "TaskTimeout" if slot.overran else LOST)
        if self._signals or (self._burst and code == 0):
            slot.done, slot.exit_code = True, code
            return
        lived = now - slot.started
        slot.backoff_s = MIN_BACKOFF_S if lived >= HEALTHY_AFTER_S else min(
            MAX_BACKOFF_S, max(MIN_BACKOFF_S, slot.backoff_s * 2))
        slot.due = now + slot.backoff_s
        log.warning("pool %s: worker %d (%s) exited with %s after %.1f s; restarting in %.1f s", self.name,
                    slot.index, slot.name, code, lived, slot.backoff_s)

    def _release(self, name: str, reason: str, error_type: str) -> None:
        try:
            requeued = release_worker(self._client, self._keys, self._scripts, name, reason, error_type=error_type)
            if requeued:
                log.info("pool %s: %d job(s) of %s back in their queues", self.name, len(requeued), name)
        except redis.RedisError as exc:
            log.warning("pool %s: could not release %s (%s); recover() will", self.name, name, exc)

    def _check_overruns(self) -> None:
        live = [s for s in self._slots if s.process is not None and s.process.poll() is None and not s.overran]
        if not live:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for slot in live:
                pipe.hmget(self._keys.worker(slot.name), ["job", "job_started_at", "job_timeout_s"])
            replies = pipe.execute()
        except redis.RedisError as exc:
            log.warning("pool %s: cannot read heartbeats: %s", self.name, exc)
            return
        now = time.time()
        for slot, (job, started, timeout) in zip(live, replies, strict=True):
            if not job or not started or not timeout:
                continue
            overrun_s = now - float(started) - float(timeout)
            if overrun_s > self._grace_s and slot.process is not None:
                slot.overran = (f"TaskTimeout: the worker pool killed worker {slot.name}: the task ran "
                                f"{overrun_s:.1f} s past its {float(timeout):g} s timeout and did not stop")
                log.warning("pool %s: killing worker %s: task %s overran its %g s timeout by %.1f s", self.name,
                            slot.name, job.decode(), float(timeout), overrun_s)
                slot.process.kill()
