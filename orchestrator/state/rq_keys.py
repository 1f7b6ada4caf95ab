"""RQ's own key names, for the parts of orch that read or write RQ's data without going through RQ's classes.

RQ owns these keys (see keys.py); orch only chooses the queue names (`Keys.queue_name`). The Lua scripts
(claim.lua, release.lua) build the same names from `RQ_PREFIX`; tests/unit/test_fleet.py checks that they
agree with the RQ release installed, so the core reads queues without importing RQ or executors/.

    rq:queues                 set    every queue's key
    rq:queue:<queue>          list   job ids waiting, the next to run at the head (index 0)
    rq:job:<id>               hash   a job (`enqueued_at`, `status`, `origin`, ...)
    rq:wip:<queue>            zset   StartedJobRegistry: "<id>:<worker>" -> when it may be presumed lost
    rq:finished:<queue>       zset   FinishedJobRegistry
    rq:failed:<queue>         zset   FailedJobRegistry
"""

from __future__ import annotations

__all__ = ["QUEUES", "REGISTRIES", "RQ_PREFIX", "job_key", "queue_key", "registry_key"]

RQ_PREFIX = "rq:"
QUEUES = f"{RQ_PREFIX}queues"
REGISTRIES = {"started": "wip", "finished": "finished", "failed": "failed"}


def job_key(job_id: str) -> str:
    return f"{RQ_PREFIX}job:{job_id}"


def queue_key(rq_queue: str) -> str:
    """The list of an RQ queue (`rq_queue` is RQ's name for it, e.g. `orch.default`)."""
    return f"{RQ_PREFIX}queue:{rq_queue}"


def registry_key(kind: str, rq_queue: str) -> str:
    """RQ's registry of `kind` (started, finished, failed) for an RQ queue name."""
    return f"{RQ_PREFIX}{REGISTRIES[kind]}:{rq_queue}"
