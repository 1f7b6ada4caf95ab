"""④ One task of a YAML workflow (yamlflows.py) compiled to a NodeSpec: its kind (`uses`, `shell`, `http`;
`wait` and `approve` are yamlwait.py's), its options, and the verdict of the node validator Python
workflows share (spec.check_node), every problem recorded as a ConfigIssue at the field it is about.

Kept apart from yamlflows.py, which reads the files and assembles their workflows: this changes when a
task gains a field, a kind or an option, not when the file layout or the workflow fields do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigIssue, WorkflowError, did_you_mean
from ..yamlpos import line_of
from .dsl import Task
from .policy import DEPENDS, RetryPolicy
from .spec import NodeSpec, check_node
from .yamlcheck import (
    Invalid,
    Parts,
    Scope,
    as_text,
    bind,
    encode,
    encode_condition,
    encode_map,
    is_template,
    split_command,
    unknown_task,
)
from .yamlwait import approve_step, wait_step

__all__ = ["HTTP_KEYS", "HTTP_METHODS", "SHELL_KEYS", "TASK_KEYS", "TaskCompiler"]

TASK_KEYS = ("name", "description", "uses", "shell", "http", "wait", "approve", "with", "map", "max_parallel", "needs", "depends",
             "when", "retries", "timeout_s", "queue")
SHELL_KEYS = ("command", "env", "cwd", "shell")
HTTP_KEYS = ("url", "method", "headers", "params", "json", "max_response_bytes", "timeout_s", "follow_redirects",
             "idempotency_key")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_KINDS = ("uses", "shell", "http", "wait", "approve")
_ITEM = {"$item": True, "path": []}
_OPTION_TYPES: tuple[tuple[str, tuple[type, ...], str], ...] = (
    ("timeout_s", (int, float), "a number of seconds"), ("max_parallel", (int,), "a whole number"),
    ("depends", (str,), f"one of {', '.join(DEPENDS)}"), ("queue", (str,), "a queue name"),
    ("when", (str,), "an expression"))
# which option a message of the shared node validator (spec.check_node) is about
_OPTION_WORDS = (("max_parallel", "max_parallel"), ("timeout_s", "timeout_s"), ("depends", "depends"),
                 ("when:", "when"), ("queue", "queue"), ("task name", "name"), ("/bin/sh", "shell"),
                 ("program to run", "shell"), ("env must", "shell"), ("shell must", "shell"))

_Call = tuple[str, str, dict[str, Any], dict[str, Any]]  # task, kind, kwargs, default options


class TaskCompiler:
    """The tasks of one YAML file, and the issues found in them (yamlflows.py adds its workflows)."""

    def __init__(self, path: Path, tasks: Mapping[str, Task[Any, Any]]) -> None:
        self.path, self.tasks = path, tasks
        self.lines: dict[Any, int] = {}
        self.issues: list[ConfigIssue] = []

    def issue(self, parts: Parts, message: str) -> None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
        self.issues.append(ConfigIssue(self.path, line_of(self.lines, parts), where or None, message))

    def check(self, fn: Callable[..., Any], *args: Any, default: Any = None) -> Any:
        """`fn(*args)`, or `default` once the problem it raised is recorded."""
        try:
            return fn(*args)
        except Invalid as exc:
            self.issue(exc.parts, str(exc))
            return default

    def unknown_keys(self, parts: Parts, item: dict[str, Any], allowed: tuple[str, ...], what: str = "field") -> None:
        for key in item:
            if key not in allowed:
                self.issue((*parts, key), f"unknown {what}{did_you_mean(key, allowed)} (expected: {', '.join(allowed)})")

    # -- a task ----------------------------------------------------------------------------------------------

    def task(self, workflow: str, parts: Parts, item: dict[str, Any], scope: Scope) -> NodeSpec | None:
        before = len(self.issues)
        self.unknown_keys(parts, item, TASK_KEYS)
        kinds = [k for k in _KINDS if k in item]
        if len(kinds) != 1:
            self.issue((*parts, kinds[1]) if kinds else parts,
                       f"a task has exactly one of uses, shell, http, wait or approve (this one has {' and '.join(kinds) or 'none'})")
            return None
        if kinds[0] != "uses" and "with" in item:
            self.issue((*parts, "with"), f"with: passes arguments to a uses: task; a {kinds[0]} task takes its "
                                         f"options under {kinds[0]}:")
        call = {"uses": self.uses, "shell": self.shell, "http": self.http, "wait": wait_step,
                "approve": approve_step}[kinds[0]]
        built: _Call | None = self.check(call, item, parts, scope)
        options = self.options(item, parts, scope)
        if len(self.issues) > before or built is None:
            return None
        task_name, kind, kwargs, defaults = built
        settings = {**defaults, **options}
        retry = RetryPolicy.from_value(settings.pop("retries", None))  # @task(retries=...) is checked already
        node = NodeSpec(name=item["name"], task=task_name, queue=settings.pop("queue", "default"), kwargs=kwargs,
                        upstream=tuple(sorted(scope.refs)), kind=kind, retry=retry, **settings)
        checked: NodeSpec | None = self.check(_check, workflow, node, parts, item)
        return checked

    def uses(self, item: dict[str, Any], parts: Parts, scope: Scope) -> _Call:
        name = item["uses"]
        if not isinstance(name, str) or name not in self.tasks:
            known = ", ".join(sorted(self.tasks)) or "none: declare @task functions in workflows/*.py"
            raise Invalid((*parts, "uses"), f"unknown task {name!r}{did_you_mean(str(name), self.tasks)} "
                                            f"(tasks: {known})")
        task = self.tasks[name]
        given = item.get("with") or {}
        if not isinstance(given, dict):
            raise Invalid((*parts, "with"), "with: maps the task's parameters to values")
        kwargs = {k: self.check(encode, v, (*parts, "with", k), scope) for k, v in given.items()}
        item_param = bind(task, set(given), scope, parts, "with" in item)
        if item_param is not None:
            kwargs[item_param] = _ITEM
        return task.name, "python", kwargs, {"queue": task.queue, **task.options}

    def shell(self, item: dict[str, Any], parts: Parts, scope: Scope) -> _Call:
        here = (*parts, "shell")
        config = dict(item["shell"]) if isinstance(item["shell"], dict) else {"command": item["shell"]}
        command_at = (*here, "command") if isinstance(item["shell"], dict) else here
        self.unknown_keys(here, config, SHELL_KEYS, "shell option")
        command = config.get("command")
        split = isinstance(command, str) and is_template(command) and config.get("shell") is not True
        if split and isinstance(command, str):  # each template one whole argv element, whatever its value holds
            command = split_command(command, command_at)
        if isinstance(command, list) and command and all(_argument(a) for a in command):
            config["command"] = [as_text(a) if isinstance(a, str) else str(a) for a in command]  # always text
        elif not (isinstance(command, str) and command.strip()):
            raise Invalid(command_at, "a shell command is a non-empty string or list of strings")
        if not isinstance(config.get("shell", False), bool):
            raise Invalid((*here, "shell"), "shell: is true or false")
        if config.get("shell") and isinstance(command, list):
            raise Invalid((*here, "shell"), "shell: true takes a command string, not a list")
        at = {"command": command_at}
        kwargs = {k: encode(v, at.get(k, (*here, k)), scope) for k, v in config.items()
                  if k in SHELL_KEYS and not (split and k == "command")}
        if split:  # problems in the pieces are located at the string they came from
            kwargs["command"] = {"$list": [encode(piece, command_at, scope) for piece in config["command"]]}
        return "shell", "shell", kwargs, {}

    def http(self, item: dict[str, Any], parts: Parts, scope: Scope) -> _Call:
        here = (*parts, "http")
        config = item["http"] if isinstance(item["http"], dict) else {"url": item["http"]}
        self.unknown_keys(here, config, HTTP_KEYS, "http option")
        url, method = config.get("url"), config.get("method", "GET")
        if not isinstance(url, str) or not (is_template(url) or url.lower().startswith(("http://", "https://"))):
            raise Invalid((*here, "url") if "url" in config else here,
                          "http needs a url: an http:// or https:// URL (or a template giving one)")
        if not isinstance(method, str) or not (is_template(method) or method.upper() in HTTP_METHODS):
            raise Invalid((*here, "method"), f"method must be one of {', '.join(HTTP_METHODS)}")
        kwargs = {k: encode(v, (*here, k), scope) for k, v in config.items() if k in HTTP_KEYS}
        return "http", "http", kwargs, {}

    def options(self, item: dict[str, Any], parts: Parts, scope: Scope) -> dict[str, Any]:
        """The node options the task sets: types checked here, values by the shared validators."""
        out: dict[str, Any] = {}
        for key, kinds, what in _OPTION_TYPES:
            if key in item:
                if isinstance(item[key], bool) or not isinstance(item[key], kinds):
                    self.issue((*parts, key), f"{key} must be {what}")
                else:
                    out[key] = item[key]
        if "retries" in item:
            out["retries"] = self.check(_retry, item["retries"], (*parts, "retries"))
        if "map" in item:
            out["map_over"] = self.check(encode_map, item["map"], (*parts, "map"), scope)
        if "when" in out:
            self.check(encode_condition, out["when"], (*parts, "when"), scope)
        self.check(_needs, item.get("needs"), (*parts, "needs"), scope)
        return out


def _retry(value: Any, parts: Parts) -> RetryPolicy | None:
    try:
        return RetryPolicy.from_value(value)
    except WorkflowError as exc:
        raise Invalid(parts, str(exc)) from None


def _needs(value: Any, parts: Parts, scope: Scope) -> None:
    needs = [value] if isinstance(value, str) else [] if value is None else value
    if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
        raise Invalid(parts, "needs: is a list of task names")
    for i, name in enumerate(needs):
        if name not in scope.tasks:
            raise Invalid((*parts, i) if isinstance(value, list) else parts, unknown_task(name, scope.tasks))
        scope.refs.add(name)


def _argument(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _check(workflow: str, node: NodeSpec, parts: Parts, item: dict[str, Any]) -> NodeSpec:
    """The node, checked by the validator `build_spec` runs on every node, Python or YAML."""
    try:
        check_node(workflow, node)
    except WorkflowError as exc:
        message = str(exc).removeprefix(f"workflow {workflow!r}: ").removeprefix(f"task {node.name!r}: ")
        key = next((k for word, k in _OPTION_WORDS if word in message and k in item), None)
        if key == "depends":
            message += did_you_mean(str(item["depends"]), DEPENDS)
        raise Invalid((*parts, key) if key else parts, message) from None
    return node
