"""`orch worker --engine rq`: RQ's stock SimpleWorker with orch's job class, plus orch's heartbeat.

Kept apart from the fast-path worker (worker.py), which is orch's own loop and bookkeeping: this engine
lets RQ claim, run and record the jobs, and only adds what orch needs around it (the heartbeat with the
current job, the finished-tasks counter, handing back what a stopped worker held). It changes when RQ's
worker API does; the fast path changes with orch's own claim protocol.
"""

from __future__ import annotations

import logging
import time

import redis
from rq import SimpleWorker
from rq.job import Job, JobStatus
from rq.queue import Queue

from orchestrator.catalog.fleet import FinishedCounter
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.lua import Scripts

from .attempt import stop_cancelled
from .catalog import Catalog
from .heartbeat import Heartbeat
from .jobs import OrchJob
from .recovery import release_worker
from .serializer import JSONSerializer

__all__ = ["OrchWorker", "run_rq"]

log = logging.getLogger(__name__)


class OrchWorker(SimpleWorker):
    """RQ's in-process worker with orch's job class (`--engine rq`), reporting its current job to a heartbeat."""

    job_class = OrchJob
    heartbeat_: Heartbeat | None = None
    catalog: Catalog | None = None
    counter: FinishedCounter | None = None

    def execute_job(self, job: Job, queue: Queue) -> None:
        payload = job.payload if isinstance(job, OrchJob) else {}
        if self.heartbeat_ is not None and self.catalog is not None:
            task, timeout_s = self.catalog.describe(payload)
            self.heartbeat_.activity.begin(job.id, payload, task, timeout_s)
        try:
            super().execute_job(job, queue)
        finally:
            if self.heartbeat_ is not None:
                self.heartbeat_.activity.end(job.get_status(refresh=False) == JobStatus.FINISHED)
            self._count_finished(queue)

    def _count_finished(self, queue: Queue) -> None:
        """One round trip more per job (RQ's own worker spends dozens): best effort, it only feeds a view."""
        if self.counter is None:
            return
        pipe = self.connection.pipeline(transaction=False)
        for command in self.counter.commands(queue.name, time.time()):
            pipe.execute_command(*command)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.debug("worker %s: could not count a finished task: %s", self.name, exc)


def run_rq(client: redis.Redis, settings: Settings, keys: Keys, queues: list[str], name: str, burst: bool,
           pool: str, catalog: Catalog) -> bool:
    """Serve `queues` in RQ's SimpleWorker (run_worker has installed the runner's context). True if any job ran."""
    heartbeat = Heartbeat(client, keys, settings, name, queues, engine="rq", pool=pool, rq_registration=False,
                          on_cancel=stop_cancelled)
    worker = OrchWorker(
        [keys.queue_name(q) for q in queues],
        connection=client,
        name=name,
        serializer=JSONSerializer,
        job_class=OrchJob,
        default_result_ttl=settings.job_result_ttl_s,
        maintenance_interval=settings.worker_maintenance_interval_s,
    )
    worker.heartbeat_ = heartbeat
    worker.catalog = catalog
    worker.counter = FinishedCounter(keys)
    log.info("worker %s: serving queues %s (RQ SimpleWorker)", name, ", ".join(queues))
    heartbeat.start()
    # RQ logs several lines per job at INFO; orch's engine logs each run instead.
    rq_level = "DEBUG" if settings.log_level == "DEBUG" else "WARNING"
    try:
        worked = worker.work(burst=burst, logging_level=rq_level, with_scheduler=False)
    finally:
        heartbeat.stop()
        release_worker(client, keys, Scripts(client), name, f"worker {name} stopped while running this task")
    log.info("worker %s: stopped", name)
    return bool(worked)
