"""Event sources reserved for orch's own triggers.

Sources under `/schedules/` (cron ticks), `/hooks/` (webhooks) and `/watches/` (file watches) come only
from those triggers, which publish through `publish.py`; `/runs/` only from the engine, which announces
there how runs start and end (workflows/announce.py). The engine applies a schedule's overlap policy
to events by their source, and rules may trust that `source: /hooks/github` was verified, so events from
applications, `POST /events`, `orch emit` and tasks (the `custom` trigger) may not use these prefixes,
and a webhook's or a watch's own `source:` must stay under its trigger's prefix.
"""

from __future__ import annotations

from ..errors import EventError

__all__ = ["HOOKS", "RESERVED_SOURCES", "RUNS", "SCHEDULES", "WATCHES", "check_custom_source", "own_source_problem",
           "reserved_prefix"]

SCHEDULES = "/schedules/"
HOOKS = "/hooks/"
WATCHES = "/watches/"
RUNS = "/runs/"
RESERVED_SOURCES = {SCHEDULES: "cron schedules", HOOKS: "webhooks", WATCHES: "file watches",
                    RUNS: "run lifecycle events (the engine)"}


def reserved_prefix(source: str) -> str | None:
    """The reserved prefix `source` starts with, or None."""
    return next((prefix for prefix in RESERVED_SOURCES if source.startswith(prefix)), None)


def check_custom_source(source: str, where: str = "") -> None:
    """Refuse (EventError naming `source`, HTTP 422) a custom event posing as one of orch's triggers."""
    prefix = reserved_prefix(source)
    if prefix is not None:
        field = f"{where}.source" if where else "source"
        raise EventError(f"{field} {source!r}: sources under {prefix} are reserved for orch's "
                         f"{RESERVED_SOURCES[prefix]} ({', '.join(RESERVED_SOURCES)} are all reserved); "
                         "choose another source, e.g. /my-app", field="source")


def own_source_problem(source: str, prefix: str) -> str | None:
    """Why a trigger's configured `source` may not be used (it must start with the trigger's `prefix`), or None."""
    if source.startswith(prefix):
        return None
    return (f"must start with {prefix} (e.g. {prefix}my-name): sources under {', '.join(RESERVED_SOURCES)} "
            f"come only from orch's own triggers, each under its own prefix, so that rules can trust them")
