"""③ ⑧ What the engine logs about each run a batch changed: started, dispatched, finished, not started."""

from __future__ import annotations

import logging

from ..logsetup import about
from ..workflows.advance import Change

__all__ = ["log_change"]

log = logging.getLogger("orchestrator.engine.loop")  # the engine's own log, as before this module existed


def log_change(change: Change) -> None:
    """Log a run that started, the attempts dispatched, a run that finished (or was cut)."""
    run = change.run
    if change.cut:
        log.warning("run %s of workflow %s not started, recorded as failed: %s", run.id, run.workflow, run.error)
        return
    if change.created:
        log.info("run %s started: workflow %s, rule %s, event %s", run.id, run.workflow, run.rule, run.event.id,
                 extra=about(run.id))
    for dispatch in change.dispatches:
        log.debug("run %s: dispatched %s (attempt %d) to %s", run.id, dispatch.node, dispatch.attempt,
                  dispatch.queue, extra=about(run.id, dispatch.node, dispatch.attempt))
    if change.finished:
        log.info("run %s %s in %.3fs%s", run.id, run.status, run.duration_s or 0.0,
                 f": {run.error}" if run.error else "", extra=about(run.id))
