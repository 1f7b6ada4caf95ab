"""What `orch api` shows of a deployment besides runs and events: the project catalogue (rules,
workflows, schedules, webhooks, watches), which the engine writes to Redis because the API does not load
the project, and the live workers and queues.

    model.py    the catalogue's shape (pydantic), checked when read back
    build.py    the catalogue of a loaded project (pure)
    store.py    writing it (an engine chore), reading it back, and the view GET /catalog answers
    fleet.py    workers and queues, read from heartbeats and RQ's keys; tasks finished per minute
"""

from .build import Describable, build_catalog, dag_nodes
from .fleet import FinishedCounter, queues_view, workers_view
from .store import PublishCatalog, catalog_view, read_catalog, webhook_deliveries, write_catalog

__all__ = ["Describable", "FinishedCounter", "PublishCatalog", "build_catalog", "catalog_view", "dag_nodes",
           "queues_view", "read_catalog", "webhook_deliveries", "workers_view", "write_catalog"]
