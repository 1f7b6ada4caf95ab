"""The only kind of RQ job an orch worker runs: one that calls the entry point, with JSON data.

RQ resolves a job's function by importing the dotted path stored in the job (`func_name`), and its
callbacks the same way; anyone able to write a job hash could make a worker import and call anything.
`OrchJob` refuses every function but `ENTRYPOINT` and every callback, so the task is looked up by its
registered name inside the entry point instead.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job

from orchestrator.errors import TaskError

__all__ = ["ENTRYPOINT", "OrchJob"]

ENTRYPOINT = "executors.runner.run_task"


class OrchJob(Job):
    """An RQ job restricted to orch's entry point."""

    @property
    def func(self) -> Any:
        if self.func_name != ENTRYPOINT or self.instance is not None:
            raise TaskError(f"job {self.id} asks for {self.func_name!r}; orch workers only run {ENTRYPOINT}")
        from .runner import run_task

        return run_task

    @property
    def success_callback(self) -> Any:
        return self._refuse_callback(self._success_callback_name)

    @property
    def failure_callback(self) -> Any:
        return self._refuse_callback(self._failure_callback_name)

    @property
    def stopped_callback(self) -> Any:
        return self._refuse_callback(self._stopped_callback_name)

    def _refuse_callback(self, name: str | None) -> None:
        if name:
            raise TaskError(f"job {self.id} names callback {name!r}; orch jobs carry no callbacks")
        return None
