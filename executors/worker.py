"""`orch worker`: an RQ worker that runs orch jobs, graceful on SIGTERM.

It loads the project (so tasks are found by registered name), installs the entry point's context and
serves the project's queues. SIGTERM or Ctrl-C finishes the current task and exits (RQ's warm
shutdown); a second signal stops at once.
"""

from __future__ import annotations

import logging
import os
import socket

import redis
from rq import SimpleWorker

from orchestrator.project import Project
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys

from .jobs import OrchJob
from .runner import WorkerContext, install
from .serializer import JSONSerializer

__all__ = ["OrchWorker", "run_worker"]

log = logging.getLogger(__name__)


class OrchWorker(SimpleWorker):
    """RQ's in-process worker with orch's job class: no fork per task."""

    job_class = OrchJob


def run_worker(client: redis.Redis, settings: Settings, project: Project, queues: list[str], *,
               burst: bool = False, name: str | None = None) -> bool:
    """Serve `queues` until stopped (or, with `burst`, until they are empty). True if any job ran."""
    keys = Keys(settings.key_prefix)
    name = name or f"{socket.gethostname()}-{os.getpid()}"
    install(WorkerContext(client=client, keys=keys, tasks=dict(project.tasks), worker=name))
    worker = OrchWorker(
        [keys.queue_name(q) for q in queues],
        connection=client,
        name=name,
        serializer=JSONSerializer,
        job_class=OrchJob,
        default_result_ttl=settings.job_result_ttl_s,
        maintenance_interval=settings.worker_maintenance_interval_s,
    )
    log.info("worker %s: serving queues %s with %d tasks", name, ", ".join(queues), len(project.tasks))
    if not project.tasks:
        log.warning("worker %s: no tasks in %s/workflows: every job will fail (is --project / ORCH_PROJECT right?)",
                    name, project.root)
    # RQ logs several lines per job at INFO; orch's engine logs each run instead.
    rq_level = "DEBUG" if settings.log_level == "DEBUG" else "WARNING"
    worked = worker.work(burst=burst, logging_level=rq_level, with_scheduler=False)
    log.info("worker %s: stopped", name)
    return bool(worked)
