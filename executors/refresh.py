"""⑥ A worker's project, loaded again when a job names a workflow version the worker does not have.

Engines reload a changed project without a restart (orchestrator/engine/reload.py), so a job may name a
workflow version newer than the one this worker loaded. Before refusing such a job, the worker's
catalogue asks `ProjectRefresh`: when the project's files changed since the last load, it loads them
again (re-importing the workflow modules) and the catalogue learns the new versions; the old versions
stay known, so jobs of runs started before the change still run. Files that did not change are not
loaded again, so a forged job naming a made-up version costs a few stat calls, never an import.
A project that does not load is logged and the job is refused as before (UnknownWorkflowVersion).

`deploying` says whether a version the worker still lacks may be on its way to its host: it is the
active rule set's, published less than `worker_deploy_grace_s` ago (one read of `<p>:ruleset:data`,
only for a job naming a version the worker lacks). Then the job is retried (catalog.WorkflowNotDeployed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import redis

from orchestrator.errors import ConfigError
from orchestrator.project import Project
from orchestrator.project_files import fingerprint
from orchestrator.state.keys import Keys
from orchestrator.state.ruleset import RulesetError, read_active

__all__ = ["ProjectRefresh", "deploying"]

log = logging.getLogger(__name__)

class ProjectRefresh:
    """Load the project at `root` again with `load`, when its files changed since the last load."""

    def __init__(self, root: Path, load: Callable[[], Project]) -> None:
        self._root = root
        self._load = load
        self._seen = fingerprint(root)
        self.latest: Project | None = None  # the last project it loaded (what a new worker of this process starts with)

    def __call__(self) -> Project | None:
        """The project loaded again, or None: its files did not change, or it does not load (logged)."""
        now = fingerprint(self._root)
        if now == self._seen:
            return None
        self._seen = now
        try:
            project = self._load()
        except ConfigError as exc:
            log.error("worker: the project changed but does not load; keeping the workflows loaded before:\n%s",
                      "\n".join(str(issue) for issue in exc.issues[:10]))
            return None
        self.latest = project
        log.info("worker: project loaded again (rule-set version %s): %d workflows", project.ruleset,
                 len(project.workflows))
        return project


def deploying(client: redis.Redis, keys: Keys, grace_s: float) -> Callable[[str, str], bool]:
    """Whether `workflow` at `version` is in the active rule-set version, published less than `grace_s` ago."""
    def recent(workflow: str, version: str) -> bool:
        if grace_s <= 0:
            return False
        try:
            active = read_active(client, keys)
        except (RulesetError, redis.RedisError) as exc:
            log.warning("worker: cannot read the active rule-set version (%s): the job is refused", exc)
            return False
        return (active is not None and active.workflows.get(workflow) == version
                and time.time() - active.at < grace_s)
    return recent
