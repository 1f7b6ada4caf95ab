"""Every error orch raises on purpose, rooted in one class.

    OrchestratorError                 anything orch raises deliberately
    ├── ConfigError                   a project or setting is wrong; carries ConfigIssue(file, line, field)
    ├── RedisUnavailableError         Redis is missing, unreachable or too old; says how to fix it
    ├── EventError                    an event is malformed; names the attribute (HTTP 4xx)
    │   └── EventTooLargeError        an event or body exceeds the size limit (HTTP 413)
    ├── RuleError                     a rule cannot be applied to an event (template render failed)
    ├── WorkflowError                 a workflow definition is invalid when it is registered
    │   └── CycleError                its dependencies form a cycle
    └── TaskError                     a task cannot run (unknown name, unserializable result)

Never raised for control flow; never raised with `assert`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "CycleError",
    "EventError",
    "EventTooLargeError",
    "OrchestratorError",
    "RedisUnavailableError",
    "RuleError",
    "TaskError",
    "WorkflowError",
    "did_you_mean",
    "files_inside",
    "hidden",
    "pydantic_message",
]


class OrchestratorError(Exception):
    """Base of every error orch raises deliberately."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a project file: where it is and what is wrong."""

    file: Path | None
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = str(self.file) if self.file else "<project>"
        if self.line is not None:
            where += f":{self.line}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ConfigError(OrchestratorError):
    """A project or a setting is invalid; `issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue] | str) -> None:
        if isinstance(issues, str):
            issues = [ConfigIssue(None, None, None, issues)]
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class RedisUnavailableError(OrchestratorError):
    """Redis is not configured, not reachable, or older than orch supports."""


class EventError(OrchestratorError):
    """An event is malformed. `field` names the offending attribute when there is one."""

    status_code = 422

    def __init__(self, message: str, field: str | None = None, status_code: int | None = None) -> None:
        self.field = field
        if status_code is not None:
            self.status_code = status_code
        super().__init__(message)


class EventTooLargeError(EventError):
    """An event, or the request carrying it, is larger than the configured limit."""

    status_code = 413


class RuleError(OrchestratorError):
    """A rule could not be applied to an event, e.g. its parameters failed to render."""


class WorkflowError(OrchestratorError):
    """A workflow definition is invalid: unknown names, bad arguments, no tasks."""


class CycleError(WorkflowError):
    """A workflow's dependencies form a cycle; `cycle` lists the nodes in order."""

    def __init__(self, workflow: str, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(f"workflow {workflow!r} has a dependency cycle: {' -> '.join(cycle)}")


class TaskError(OrchestratorError):
    """A task cannot be run or its outcome cannot be recorded."""


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the option closest to a misspelt `word`, else ``."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def pydantic_message(error: Any, loc: tuple[str, ...], model: type[Any]) -> str:
    """One pydantic validation error of a config item as the message of a ConfigIssue."""
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "extra_forbidden":
        fields = [info.alias or name for name, info in model.model_fields.items()]  # `if`, not `if_`
        allowed = [n for n in fields if n not in loc]
        return f"unknown field{did_you_mean(loc[-1], allowed)} (fields: {', '.join(fields)})"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def files_inside(root: Path, candidates: Iterable[Path]) -> tuple[list[Path], list[ConfigIssue]]:
    """The project files among `candidates` whose real path is inside `root`, and an issue for each other
    one (a symlink leading out of the project: the loader never reads or imports a file from elsewhere)."""
    real_root = root.resolve()
    inside, issues = [], []
    for path in candidates:
        real = path.resolve()
        if real == real_root or real.is_relative_to(real_root):
            inside.append(path)
        else:
            issues.append(ConfigIssue(path, None, None, f"is a symlink to {real}, outside the project {real_root}: "
                                      "orch only reads project files inside it; copy the file into the project"))
    return inside, issues


def hidden(path: Path, folder: Path) -> bool:
    """Whether `path` lies in a hidden part of `folder` (a name starting with a dot). A Kubernetes ConfigMap
    volume keeps every file twice: the visible link and the real file in `..<timestamp>/`; only the first
    is the project's."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts)
