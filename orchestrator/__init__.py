"""orch: an event-driven workflow orchestrator on Redis Streams and RQ.

The data flow, and where each stage lives:

    ① triggers/ · events.client      events from apps (Client.emit, AsyncClient), HTTP (api), CLI, cron, webhooks, files
    ② events/                        CloudEvents envelope, publish (dedup + XADD), consumer groups, trimming
    ③ rules/, engine/plan.py         rules matched to events; parameters rendered in Jinja2's sandbox
    ④ workflows/                     @task/@workflow -> WorkflowSpec (a validated DAG); runs and readiness
    ⑤ executors/dispatch.py          each ready task -> one RQ job (JSON, one entry point)
    ⑥ executors/runner.py, worker.py the worker runs the task by registered name
    ⑦ workflows/records.py           started / succeeded / failed, reported on the results stream
    ⑧ workflows/advance.py, engine/  results applied to runs; dependents dispatched; runs finish

Public API: `emit`, `Client`, `AsyncClient`, `Event`, `task`, `workflow`, `wait_for_event`, `approval`,
`Settings`, and the errors
(schedules declared in Python: `triggers.cron.schedule`).
"""

from .errors import (
    ConfigError,
    CycleError,
    EventError,
    OrchestratorError,
    RedisUnavailableError,
    RuleError,
    TaskError,
    WorkflowError,
)
from .events.client import AsyncClient, Client, emit
from .events.envelope import Event
from .settings import Settings
from .workflows.dsl import Task, TaskRef, Workflow, call_http, run_shell, task, workflow
from .workflows.waitdsl import approval, wait_for_event

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "ConfigError",
    "CycleError",
    "Event",
    "EventError",
    "OrchestratorError",
    "RedisUnavailableError",
    "RuleError",
    "Settings",
    "Task",
    "TaskError",
    "TaskRef",
    "Workflow",
    "WorkflowError",
    "__version__",
    "approval",
    "call_http",
    "emit",
    "run_shell",
    "task",
    "wait_for_event",
    "workflow",
]
