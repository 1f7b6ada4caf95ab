"""① Triggers: outside input becomes events, published through the core.

    cron/       schedules: the model, DST-aware fire times, replicas that fire each tick once
    webhooks/   POST /hooks/{name}: endpoints, signature checks, mapping to events, the API router
    files/      file watches: the model, path confinement, the watcher

Each declares the project YAML section it reads (`SECTION`, an `orchestrator.project.Section`); the
process entry points pass `SECTIONS` to the project loader (orchestrator/cli/wiring.py), so the core
never imports this package.
"""

from .cron import SECTION as SCHEDULES
from .files import SECTION as WATCHES
from .webhooks import SECTION as HOOKS

__all__ = ["HOOKS", "SCHEDULES", "SECTIONS", "WATCHES"]

SECTIONS = (SCHEDULES, HOOKS, WATCHES)
