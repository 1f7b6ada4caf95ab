"""③ What an engine shows of its rule-set version (engine/reload.py): its view in `<p>:ruleset:engines`,
which `orch reload` (before publishing), `orch reload --wait`, `orch_ruleset_info` and the engine's page
read, and the `orch_project_reloads_total` counter.

Kept apart from reload.py, which decides which version the engine runs: this changes with what operators
are shown (and how often it is written), not with how an engine switches versions.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import redis

from ..metrics import PROJECT_RELOADS, MetricsBatch
from ..project import Project
from ..state.ruleset import EngineView, forget_views, write_view

if TYPE_CHECKING:
    from .loop import Engine

__all__ = ["VIEW_EVERY_S", "VersionView"]

VIEW_EVERY_S = 5.0


class VersionView:
    """One engine's view, written at most every VIEW_EVERY_S unless something it shows changed (`soon`),
    and its reload counter."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._viewed_s = 0.0
        self._forgot = False  # whether the views of engines silent for a day were removed yet

    def soon(self) -> None:
        """Something the view shows changed: write it at the next chance."""
        self._viewed_s = 0.0

    def write(self, client: redis.Redis, running: str, wanted: str, behind: str | None, refused: str | None,
              local: Project) -> None:
        """The view of an engine running version `running` and wanting `wanted`; `local` is its own copy."""
        now_s = time.time()
        if now_s - self._viewed_s < VIEW_EVERY_S:
            return
        if not self._forgot:
            forget_views(client, self._engine.keys, now_s)
            self._forgot = True
        self._viewed_s = now_s
        write_view(client, self._engine.keys, EngineView(
            self._engine.consumer.consumer, running, wanted, "behind" if behind else "ok", behind,
            refused, now_s, {name: wf.spec.digest for name, wf in local.workflows.items()}))

    def count(self, client: redis.Redis, result: str) -> None:
        """One more `orch_project_reloads_total{result=...}`."""
        metrics = MetricsBatch()
        metrics.inc(PROJECT_RELOADS, result)
        pipe = client.pipeline(transaction=False)
        metrics.flush(pipe, self._engine.keys)
        pipe.execute()
