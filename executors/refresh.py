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
from orchestrator.project import RULES_DIR, WORKFLOWS_DIR, Project

__all__ = ["ProjectRefresh", "fingerprint"]

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(root: Path) -> Fingerprint:
    """(path, size, mtime ns) of every rule and workflow file of the project at `root`."""
    found = []
    for folder in (root / RULES_DIR, root / WORKFLOWS_DIR):
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if path.suffix in (".yaml", ".yml", ".py") and path.is_file():
                stat = path.stat()
                found.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(found))


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
