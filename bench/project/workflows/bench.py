"""The benchmark's workflow: one task that returns its argument, so only orchestration is measured."""

from typing import Any

from orchestrator import task, workflow


@task
def noop(value: Any = None) -> Any:
    """Return the argument unchanged."""
    return value


@workflow
def bench_one(value: Any = None) -> None:
    noop(value)
