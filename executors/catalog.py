"""⑥ What a job may ask for: the worker's own project, and a job's payload checked against it.

A job hash is data anyone with write access to Redis could forge, so its payload only names an attempt
(workflow, version, node, run, attempt) and carries the values of the node's slots (`args`, see
orchestrator/workflows/slots.py). Everything that decides what runs comes from the project this worker
loaded: the workflow's spec, found by name *and* version (the digest of its graph), gives the kind, the
registered function or the command or URL template, every literal argument, the timeout and the retry
policy. So:

- a payload with any other field, or fields of the wrong type, is refused (`ForgedJob`); the optional
  `traceparent` / `tracestate` (the run's trace context) only ever parent the attempt's span, and a
  malformed one is ignored;
- a workflow version this worker does not have is refused, never run (`UnknownWorkflowVersion`: the
  engine and the workers must run the same project), unless the worker's project changed on disk and,
  loaded again (`refresh`, executors/refresh.py), has it: engines reload a changed project on their own.
  While that version is the active rule set's, published less than `worker_deploy_grace_s` ago
  (`deploying`, executors/refresh.py), the files may be on their way: `WorkflowNotDeployed`, retryable,
  and the engine dispatches the attempt again after a backoff, whatever the node's retry policy;
- values that do not fit the node's slots are refused (`SlotError`).

A refused job is reported failed, without anything being run: final (`retryable=False`), but for
`WorkflowNotDeployed`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.project import Project
from orchestrator.tracing import TRACEPARENT, TRACESTATE, TraceContext, parse
from orchestrator.workflows.commands import argument_injection
from orchestrator.workflows.dsl import Task
from orchestrator.workflows.runs import idempotency_key
from orchestrator.workflows.slots import SlotError, bind
from orchestrator.workflows.spec import NodeSpec, WorkflowSpec
from orchestrator.workflows.work import OPTIONAL_PAYLOAD_FIELDS, PAYLOAD_FIELDS

from .kinds.errors import InvalidTaskOptions, TaskFailure, UnknownTaskError

__all__ = ["Catalog", "ForgedJob", "JobPayload", "UnknownWorkflowVersion", "Work", "WorkflowNotDeployed"]

_ITEM = re.compile(r"^(?P<parent>.+)\[(?P<index>\d+)\]$")
_FIELDS = frozenset(PAYLOAD_FIELDS)
_OPTIONAL = frozenset(OPTIONAL_PAYLOAD_FIELDS)


class ForgedJob(TaskFailure):
    """A payload that is not one the engine makes: unknown or missing fields, wrong types."""

    retryable = False


class UnknownWorkflowVersion(TaskFailure):
    """The job's workflow version is not the one this worker loaded."""

    retryable = False


class WorkflowNotDeployed(TaskFailure):
    """The job's workflow version is the active rule set's, published moments ago, and this worker's files
    do not have it yet (a reload its host has not got): the engine dispatches the attempt again later."""

    retryable = True


@dataclass(frozen=True)
class JobPayload:
    """A job's payload, checked for shape: it names one attempt and carries the node's slot values."""

    workflow: str
    version: str
    node: str
    run: str
    attempt: int
    args: list[Any]
    trace: TraceContext | None = None

    @classmethod
    def parse(cls, payload: Any) -> JobPayload:
        if not isinstance(payload, dict):
            raise ForgedJob(f"the job's payload is a {type(payload).__name__}, not an object")
        if payload.keys() - _OPTIONAL != _FIELDS:
            extra, missing = sorted(set(payload) - _FIELDS - _OPTIONAL), sorted(_FIELDS - set(payload))
            raise ForgedJob(f"the job's payload {'has unexpected field(s) ' + ', '.join(extra) if extra else ''}"
                            f"{'; ' if extra and missing else ''}{'lacks ' + ', '.join(missing) if missing else ''}: "
                            "it was not made by orch's engine (jobs carry identifiers and values only)")
        workflow, version, node, run = (payload[name] for name in ("workflow", "version", "node", "run"))
        attempt, args = payload["attempt"], payload["args"]
        if not all(isinstance(t, str) and t for t in (workflow, version, node, run)) or isinstance(attempt, bool) \
                or not isinstance(attempt, int) or attempt < 1 or not isinstance(args, list):
            raise ForgedJob("the job's payload has fields of the wrong type (workflow, version, node and run are "
                            "strings, attempt a positive integer, args a list)")
        return cls(workflow, version, node, run, attempt, args, parse(payload.get(TRACEPARENT), payload.get(TRACESTATE)))

    @classmethod
    def identify(cls, payload: Any) -> tuple[str, str, int] | None:
        """(run, node, attempt) when the payload names them, even if it is refused otherwise."""
        if not isinstance(payload, dict):
            return None
        run, node, attempt = payload.get("run"), payload.get("node"), payload.get("attempt")
        if isinstance(run, str) and isinstance(node, str) and isinstance(attempt, int) and not isinstance(attempt, bool):
            return run, node, attempt
        return None


@dataclass(frozen=True)
class Work:
    """What the worker's own project says one job runs."""

    job: JobPayload
    node: NodeSpec
    task: str  # the registered task, or the kind for shell and http nodes
    kind: str
    timeout_s: float
    args: list[Any]
    kwargs: dict[str, Any]

    @property
    def key(self) -> str:
        """The idempotency key: the same for every attempt of this task in this run."""
        return idempotency_key(self.job.run, self.job.node)


class Catalog:
    """The workflows (by name and version) and tasks of the project a worker loaded."""

    def __init__(self, workflows: Iterable[WorkflowSpec], tasks: Mapping[str, Task[Any, Any]],
                 default_timeout_s: float, refresh: Callable[[], Project | None] | None = None,
                 deploying: Callable[[str, str], bool] | None = None) -> None:
        self.specs = {(spec.name, spec.digest): spec for spec in workflows}
        self._refresh = refresh  # the project loaded again when its files changed (None: they did not)
        self._deploying = deploying  # (workflow, version) -> whether its files may still be on their way
        self.versions = {name: digest for name, digest in self.specs}
        self.tasks = dict(tasks)
        self.default_timeout_s = default_timeout_s
        self._last: tuple[Any, Work] | None = None  # the last payload checked (describe, then run_task)

    def add(self, spec: WorkflowSpec) -> None:
        """Know one more workflow version (a worker loads them all from its project at start)."""
        self.specs[(spec.name, spec.digest)] = spec
        self.versions[spec.name] = spec.digest

    def work(self, payload: Any) -> Work:
        """The checked work for `payload`; ForgedJob, UnknownWorkflowVersion, UnknownTaskError or
        SlotError (all final) when the project does not define it."""
        last = self._last
        if last is not None and last[0] is payload:  # the same object the worker just described: checked
            return last[1]
        work = self._check(payload)
        self._last = (payload, work)
        return work

    def _check(self, payload: Any) -> Work:
        job = JobPayload.parse(payload)
        spec = self.specs.get((job.workflow, job.version))
        if spec is None and self._refreshed():
            spec = self.specs.get((job.workflow, job.version))
        if spec is None and self._deploying is not None and self._deploying(job.workflow, job.version):
            raise WorkflowNotDeployed(self._unknown(job) + "; it was published moments ago, so the attempt is "
                                      "tried again until ORCH_WORKER_DEPLOY_GRACE_S is over")
        if spec is None:
            raise UnknownWorkflowVersion(self._unknown(job))
        match = _ITEM.match(job.node)
        try:
            node = spec.node(match["parent"] if match else job.node)
        except KeyError:
            raise UnknownTaskError(f"workflow {job.workflow!r} (version {job.version}) has no task {job.node!r}") from None
        if node.kind == "python" and node.task not in self.tasks:
            raise UnknownTaskError(f"task {node.task!r} is not registered in the project this worker loaded; "
                                   "deploy the same project to workers and engine")
        try:
            args, kwargs = bind(node, job.args)
        except SlotError as exc:
            raise ForgedJob(str(exc)) from None
        if node.kind == "shell":
            refused = argument_injection(node.kwargs.get("command", {}), kwargs.get("command", ()))
            if refused:
                raise InvalidTaskOptions(refused)
        timeout_s = float(node.timeout_s) if node.timeout_s else self.default_timeout_s
        return Work(job, node, node.task, node.kind, timeout_s, args, kwargs)

    def _refreshed(self) -> bool:
        """Learn the workflows (and tasks) of the project loaded again, if its files changed; True if so."""
        project = self._refresh() if self._refresh is not None else None
        if project is None:
            return False
        for workflow in project.workflows.values():
            self.add(workflow.spec)
        self.tasks.update(project.tasks)  # tasks by name: old versions' jobs run the code loaded now, as after a restart
        return True

    def describe(self, payload: Any) -> tuple[str, float]:
        """The job's task and time limit, for the worker's bookkeeping; for a payload the project does not
        define (it fails at once), its node and the default limit."""
        try:
            work = self.work(payload)
        except TaskFailure:
            node = payload.get("node") if isinstance(payload, dict) else None
            return str(node or ""), self.default_timeout_s
        return work.task, work.timeout_s

    def _unknown(self, job: JobPayload) -> str:
        loaded = self.versions.get(job.workflow)
        have = f"this worker loaded version {loaded}" if loaded else "this worker's project has no such workflow"
        return (f"workflow {job.workflow!r} version {job.version} is not the one this worker runs ({have}): deploy "
                "the same project to workers and engine; nothing was run (`orch runs rerun RUN` starts the run "
                "again with the version the engine has now)")
