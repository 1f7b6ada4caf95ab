"""The only kind of RQ job an orch worker runs: one that calls the entry point, with JSON data.

RQ resolves a job's function by importing the dotted path stored in the job (`func_name`), and its
callbacks the same way; anyone able to write a job hash could make a worker import and call anything.
`OrchJob` refuses every function but `ENTRYPOINT` and every callback, so the task is looked up by its
registered name inside the entry point instead. A job hash RQ cannot even read (a timeout that is not a
number, dates that are not dates) is dropped, rather than ending RQ's worker loop: its task is then a
task whose job vanished, which the engine fails as JobLost and retries per its policy. (The fast worker
does not parse a job's dates, which it never reads: there a bad date is ignored, not a reason to drop.)
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from orchestrator.errors import TaskError

__all__ = ["ENTRYPOINT", "OrchJob"]

ENTRYPOINT = "executors.runner.run_task"

log = logging.getLogger(__name__)


class OrchJob(Job):
    """An RQ job restricted to orch's entry point."""

    @property
    def func(self) -> Any:
        if self.func_name != ENTRYPOINT or self.instance is not None:
            raise TaskError(f"job {self.id} asks for {self.func_name!r}; orch workers only run {ENTRYPOINT}")
        from .runner import run_task

        return run_task

    @classmethod
    def fetch(cls, id: str, connection: redis.Redis | None = None, serializer: Any = None) -> Job:  # noqa: A002
        """RQ's fetch; a hash it cannot read is marked failed and reported as gone (RQ then moves on)."""
        try:
            return super().fetch(id, connection=connection, serializer=serializer)
        except (NoSuchJobError, redis.RedisError):
            raise
        except Exception as exc:
            log.warning("job %s cannot be read (%s); dropped: the engine retries its task as JobLost", id, exc)
            if connection is not None:
                connection.delete(cls.key_for(id))  # gone, the engine's stall sweep reports it (JobLost)
            raise NoSuchJobError(f"job {id} cannot be read: {exc!r}") from exc

    @property
    def payload(self) -> dict[str, Any]:
        """The entry point's argument, or {} for a job whose data is not one (it fails when it runs: the
        payload is untrusted, and reading it must never raise in the worker's loop)."""
        try:
            args = self.args
        except Exception:  # noqa: BLE001 - not JSON, not zlib, not [func, instance, args, kwargs]: any of it
            return {}
        first = args[0] if isinstance(args, list | tuple) and args else None
        return first if isinstance(first, dict) else {}

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
