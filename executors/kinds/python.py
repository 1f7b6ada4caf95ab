"""The `python` kind: a task registered with `@task`, looked up by name, called with its arguments.

A coroutine function runs in a fresh event loop (`asyncio.run`), which copies the context: the
coroutines it awaits see the task context and the cause too.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from orchestrator.workflows.dsl import Task

from ..attempt import Attempt

__all__ = ["run_python"]


def run_python(task: Task[Any, Any], attempt: Attempt) -> Any:
    """Call `task` with the attempt's arguments and return its result (awaited if it is a coroutine)."""
    result = task.fn(*attempt.args, **attempt.kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable
