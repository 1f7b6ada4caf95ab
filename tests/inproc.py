"""An engine and workers in the test's own process, on a real Redis: the integration tier's deployment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import redis

from executors.dispatch import RQDispatcher
from executors.refresh import ProjectRefresh
from executors.worker import run_worker
from orchestrator import Client
from orchestrator.engine import Engine
from orchestrator.project import Project
from orchestrator.settings import Settings
from orchestrator.workflows.runs import Run, derive_run_id


class Stack:
    """An engine and a burst worker sharing one project and one Redis."""

    def __init__(self, r: redis.Redis, settings: Settings, project: Project, consumer: str = "engine-test",
                 clock: Callable[[], datetime] | None = None) -> None:
        self.r, self.settings, self.project = r, settings, project
        self.engine = Engine(r, settings, project, RQDispatcher(r, settings), consumer=consumer,
                             **({"clock": clock} if clock is not None else {}))
        self.engine.consumer.ensure_groups()
        self.refresh: ProjectRefresh | None = None  # how its burst workers load the project again

    def emit(self, type: str, data: object, **attrs: object) -> str:
        with Client(settings=self.settings, connection=self.r) as client:
            return client.emit(type, data, **attrs)  # type: ignore[arg-type]

    def drain(self, rounds: int = 20) -> None:
        """Alternate engine steps and worker bursts until neither has anything left to do."""
        for _ in range(rounds):
            read = self.engine.step(block=False)
            project = self.refresh.latest or self.project if self.refresh else self.project
            worked = run_worker(self.r, self.settings, project, project.queues, burst=True, refresh=self.refresh)
            if not read and not worked:
                return
        raise AssertionError("the system did not settle")

    def run(self, rule: str, source: str, event_id: str) -> Run:
        run = self.engine.store.get(derive_run_id(rule, source, event_id))
        assert run is not None, f"no run for rule {rule} and event {event_id}"
        return run
