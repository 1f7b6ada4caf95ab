"""⑥ A worker's project, loaded again when a job names a workflow version the worker does not have.

Engines reload a changed project without a restart (orchestrator/engine/reload.py), so a job may name a
workflow version newer than the one this worker loaded. Before refusing such a job, the worker's
catalogue asks `ProjectRefresh`: when the project's files changed since the last load, it loads them
again (re-importing the workflow modules) and the catalogue learns the new versions; the old versions
stay known, so jobs of runs started before the change still run. Files that did not change are not
loaded again, so a forged job naming a made-up version costs a few stat calls, never an import.
A project that does not load is logged and the job is refused as before (UnknownWorkflowVersion).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.project import Project
from orchestrator.project_files import fingerprint

__all__ = ["ProjectRefresh"]

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
