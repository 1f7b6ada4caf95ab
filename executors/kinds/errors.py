"""How a task attempt fails, as the worker reports it: an error type and whether a retry may help.

    TaskError (orchestrator.errors)
    └── TaskFailure              a classified failure: `error_type` and `retryable` go in the record
        ├── UnknownTaskError     no such task / kind in this worker (never retried)
        ├── InvalidTaskOptions   a shell or http task's options are wrong (never retried)
        ├── ResultNotJSON        the task returned something that is not JSON (never retried)
        ├── ShellExitError       a shell command exited non-zero (`exit_code`)
        ├── HTTPStatusError      a non-2xx response (`status`; 4xx but 408/429 never retried)
        ├── ResponseTooLarge     an HTTP body over `max_response_bytes` (never retried)
        └── DestinationRefused   an http task's destination is refused by the egress policy (never retried)
    TaskTimeout (orchestrator.context, a BaseException)   the attempt ran past its time limit

Any other exception a task raises is reported with its class name; `retryable` is taken from its
`retryable` attribute when that is a bool (a task can raise an error with `retryable = False` to stop
its retries), and is otherwise left to the task's retry policy.
"""

from __future__ import annotations

from orchestrator.context import TaskCancelled, TaskTimeout
from orchestrator.errors import TaskError

__all__ = [
    "DestinationRefused",
    "HTTPStatusError",
    "InvalidTaskOptions",
    "ResponseTooLarge",
    "ResultNotJSON",
    "ShellExitError",
    "TaskFailure",
    "UnknownTaskError",
    "classify",
]


class TaskFailure(TaskError):
    """A failure the worker can classify. `error_type` defaults to the class name."""

    retryable: bool | None = None

    def __init__(self, message: str, *, error_type: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type or type(self).__name__
        if retryable is not None:
            self.retryable = retryable


class UnknownTaskError(TaskFailure):
    retryable = False


class InvalidTaskOptions(TaskFailure):
    retryable = False


class ResultNotJSON(TaskFailure):
    retryable = False


class ShellExitError(TaskFailure):
    """A shell command exited with a non-zero status (negative: killed by that signal)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class HTTPStatusError(TaskFailure):
    """A response whose status is not 2xx. Retryable: 5xx, 408 and 429; other statuses are final."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, retryable=status >= 500 or status in (408, 429))
        self.status = status


class ResponseTooLarge(TaskFailure):
    retryable = False


class DestinationRefused(TaskFailure):
    """An http task's destination is refused: see `executors.kinds.egress`.

    A loopback, private or other non-global address not in ORCH_HTTP_ALLOW, or a scheme other than
    http(s). The message names the host, the address and why.
    """

    retryable = False


def classify(exc: BaseException) -> tuple[str, bool | None]:
    """The error type and retryability to report for `exc`."""
    if isinstance(exc, TaskFailure):
        return exc.error_type, exc.retryable
    if isinstance(exc, TaskTimeout):
        return "TaskTimeout", None
    if isinstance(exc, TaskCancelled):
        return "TaskCancelled", False
    retryable = getattr(exc, "retryable", None)
    return type(exc).__name__, retryable if isinstance(retryable, bool) else None
