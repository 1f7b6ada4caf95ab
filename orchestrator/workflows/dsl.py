"""④ `@task` and `@workflow`: write a workflow as a plain function; orch deduces the order.

    @task
    def fetch_order(order_id: str) -> dict: ...

    @task(queue="payments")
    def charge(order: dict) -> dict: ...

    @workflow
    def process_order(order_id: str):
        order = fetch_order(order_id)     # a reference to fetch_order's future result
        charge(order)                     # so charge runs after fetch_order, with its result

Inside a workflow function a task call returns a `TaskRef`; passing it (or an item of it, `order["id"]`)
to another task makes the dependency. `task.with_options(after=[...], name=..., queue=..., retries=...,
timeout_s=..., depends=..., when=...)` adds explicit dependencies, names a second call of the same task
or sets its policies for this call (`@task(retries=3, timeout_s=60)` sets them for every call).
`task.map(items, ...)` runs the task once per item of a list (a task result or a parameter), passing
the item as its first argument; its result is the list of results, in order (fan-out and fan-in). The workflow function runs once, when it is
decorated, to record the graph; the graph is validated then. Outside a workflow, calling a task calls
the function, so tasks stay unit-testable.

How a call becomes a node while the function is recorded (the references, their encoding) is in
dslrecord.py; this module holds what workflow authors write.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from ..errors import WorkflowError
from ..jsonutil import JSONValueError, check_json
from .dslrecord import Builder, ParamRef, Ref, TaskRef, building
from .policy import RetryPolicy
from .spec import MISSING, QUEUE_NAME, TASK_NAME, WorkflowSpec, build_spec
from .spec import ParamSpec as WorkflowParam

__all__ = ["ParamRef", "Task", "TaskRef", "Workflow", "call_http", "run_shell", "task", "workflow"]

P = ParamSpec("P")
R = TypeVar("R")

class Task(Generic[P, R]):
    """A registered unit of work. Called in a workflow it returns a TaskRef; elsewhere it runs."""

    def __init__(self, fn: Callable[P, R], *, name: str | None = None, queue: str = "default",
                 retries: int | dict[str, Any] | None = None, timeout_s: float | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.queue = queue
        self.options: dict[str, Any] = {k: v for k, v in (("retries", retries), ("timeout_s", timeout_s))
                                        if v is not None}
        RetryPolicy.from_value(retries)
        if not TASK_NAME.match(self.name):
            raise WorkflowError(f"invalid task name {self.name!r} (letters, digits, _ . and -)")
        if not QUEUE_NAME.match(queue):
            raise WorkflowError(f"task {self.name!r}: invalid queue name {queue!r}")
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        builder = building.get()
        if builder is None:
            return self.fn(*args, **kwargs)
        return builder.add(self, args, kwargs, name=None, after=(), queue=None)  # type: ignore[return-value]

    def with_options(self, *, name: str | None = None, after: Sequence[TaskRef | str] = (),
                     queue: str | None = None, retries: int | dict[str, Any] | None = None,
                     timeout_s: float | None = None, depends: str | None = None, when: str | None = None,
                     max_parallel: int | None = None) -> _Call:
        """This task with call options: a node `name`, explicit `after` dependencies, another `queue`,
        `retries` (a count or {max_retries, backoff_s, factor, max_delay_s, jitter, on}), `timeout_s`,
        `depends` (all_succeeded, all_finished, any_failed) and a `when` condition; `.map(...)` works too."""
        options = {"retries": retries, "timeout_s": timeout_s, "depends": depends, "when": when,
                   "max_parallel": max_parallel}
        return _Call(self, name, after, queue, options)

    def map(self, items: Any, *args: Any, **kwargs: Any) -> TaskRef:
        """Run this task once per item of `items` (a list result or parameter): fan-out, then fan-in."""
        return _Call(self, None, (), None, {}).map(items, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<task {self.name}>"


@dataclass
class _Call:
    """A task with call options, ready to be called (or mapped) inside a workflow."""

    task: Task[Any, Any]
    name: str | None
    after: Sequence[TaskRef | str]
    queue: str | None
    options: dict[str, Any]

    def _builder(self, what: str) -> Builder:
        builder = building.get()
        if builder is None:
            raise WorkflowError(f"{self.task.name}.{what}(...) can only be called inside a workflow")
        return builder

    def __call__(self, *args: Any, **kwargs: Any) -> TaskRef:
        return self._builder("with_options").add(self.task, args, kwargs, name=self.name, after=self.after,
                                                 queue=self.queue, options=self.options)

    def map(self, items: Any, *args: Any, **kwargs: Any) -> TaskRef:
        if not isinstance(items, Ref) and not isinstance(items, list | tuple):
            raise WorkflowError(f"{self.task.name}.map() takes a task result, a parameter or a list, "
                                f"not {type(items).__name__}")
        return self._builder("map").add(self.task, args, kwargs, name=self.name, after=self.after,
                                        queue=self.queue, options=self.options, map_over=items)


class Workflow:
    """A workflow: its validated spec and the tasks it uses."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, timeout_s: float | None = None,
                 concurrency: int | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.__doc__ = fn.__doc__
        if not TASK_NAME.match(self.name):
            raise WorkflowError(f"invalid workflow name {self.name!r} (letters, digits, _ . and -)")
        self.spec, self.tasks = _record(self.name, fn, timeout_s, concurrency)

    def __repr__(self) -> str:
        return f"<workflow {self.name}: {' '.join(n.name for n in self.spec.nodes)}>"


def _record(name: str, fn: Callable[..., Any], timeout_s: float | None = None,
            concurrency: int | None = None) -> tuple[WorkflowSpec, dict[str, Task[Any, Any]]]:
    builder = Builder(name)
    params, refs = [], {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise WorkflowError(f"workflow {name!r}: parameters must be named, not {star}{param.name}")
        default = MISSING if param.default is param.empty else param.default
        if default is not MISSING:
            try:
                check_json(default)
            except JSONValueError as exc:
                raise WorkflowError(f"workflow {name!r}: default of {param.name!r}: {exc}") from None
        params.append(WorkflowParam(param.name, default))
        refs[param.name] = ParamRef(builder, param.name)
    token = building.set(builder)
    try:
        fn(**refs)
    finally:
        building.reset(token)
    return build_spec(name, params, builder.nodes, timeout_s=timeout_s, concurrency=concurrency), builder.tasks


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(*, name: str | None = None, queue: str = "default", retries: int | dict[str, Any] | None = None,
         timeout_s: float | None = None) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(fn: Callable[P, R] | None = None, /, *, name: str | None = None, queue: str = "default",
         retries: int | dict[str, Any] | None = None,
         timeout_s: float | None = None) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Declare a task: `@task` or `@task(name=, queue=, retries=, timeout_s=)`. Its result must be JSON."""
    if fn is not None:
        return Task(fn)
    return lambda f: Task(f, name=name, queue=queue, retries=retries, timeout_s=timeout_s)


@overload
def workflow(fn: Callable[..., Any], /) -> Workflow: ...
@overload
def workflow(*, name: str | None = None, timeout_s: float | None = None,
             concurrency: int | None = None) -> Callable[[Callable[..., Any]], Workflow]: ...
def workflow(fn: Callable[..., Any] | None = None, /, *, name: str | None = None, timeout_s: float | None = None,
             concurrency: int | None = None) -> Workflow | Callable[[Callable[..., Any]], Workflow]:
    """Declare a workflow: `@workflow` or `@workflow(name=, timeout_s=, concurrency=)`; recorded and checked now."""
    if fn is not None:
        return Workflow(fn)
    return lambda f: Workflow(f, name=name, timeout_s=timeout_s, concurrency=concurrency)


def _builtin_builder(function: str) -> Builder:
    builder = building.get()
    if builder is None:
        raise WorkflowError(f"{function}(...) can only be called inside a workflow")
    return builder


def run_shell(name: str, command: str | list[Any], *, env: dict[str, Any] | None = None, cwd: str | None = None,
              shell: bool = False, after: Sequence[TaskRef | str] = (), queue: str | None = None,
              **options: Any) -> TaskRef:
    """A `shell` task inside a workflow: `command` (a list, or a string split like a shell would) runs on a
    worker; a non-zero exit fails it; its result is {exit_code, stdout, stderr}. Options as in with_options."""
    return _builtin_builder("run_shell").add_builtin(
        "shell", name, {"command": command, "env": env, "cwd": cwd, "shell": shell or None}, after=after,
        queue=queue, options=options)


def call_http(name: str, url: str | Any, *, method: str = "GET", headers: dict[str, Any] | None = None,
              json: Any = None, params: dict[str, Any] | None = None, max_response_bytes: int | None = None,
              after: Sequence[TaskRef | str] = (), queue: str | None = None, **options: Any) -> TaskRef:
    """An `http` task inside a workflow: a request whose non-2xx answer fails it (5xx, 408, 429 and
    connection errors may be retried); its result is {status, headers, body}. Options as in with_options."""
    return _builtin_builder("call_http").add_builtin(
        "http", name, {"url": url, "method": method, "headers": headers, "json": json, "params": params,
                       "max_response_bytes": max_response_bytes}, after=after, queue=queue, options=options)


def collect(objects: Iterable[Any]) -> tuple[list[Task[Any, Any]], list[Workflow]]:
    """The tasks and workflows among `objects` (e.g. a module's attributes)."""
    tasks = [o for o in objects if isinstance(o, Task)]
    workflows = [o for o in objects if isinstance(o, Workflow)]
    return tasks, workflows
