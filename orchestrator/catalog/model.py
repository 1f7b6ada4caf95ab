"""The shape of the project catalogue: what `orch engine` writes to `<p>:catalog` and `orch api` reads back.

The catalogue crosses a process boundary through Redis, so it is read back as untrusted JSON and
checked against these models (store.py). Every model ignores fields it does not know, so an engine
newer than the API does not make the catalogue unreadable. Nothing here holds a secret: webhooks show
how they verify requests, never the names or values of their secrets; workflows show their graph, never
their tasks' literal arguments (a command, a URL, a header may carry one).

    {"format": 1, "written_at": ISO, "project": {"name", "path"}, "ruleset": version,
     "rules":     [{name, types, source, filter, workflow, params, enabled, schedules: [{name, overlap}],
                    concurrency}],
     "workflows": [{name, version, kind, params: [{name, required}], timeout_s, concurrency,
                    nodes: [{name, task, kind, queue, upstream, depends, retries, timeout_s, mapped,
                             max_parallel, when}]}],
     "schedules": [{name, cron, timezone, enabled, type, source, catchup, overlap, rules}],
     "hooks":     [{name, path, verify, source, enabled, rules}],
     "watches":   [{name, directory, include, exclude, recursive, events, source, enabled, rules}]}

Each trigger declares what it shows by a `catalog_entry()` method on its configuration model returning
one of these entries (see build.py): the trigger knows which of its fields are safe to show.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

__all__ = ["FORMAT", "Catalog", "HookEntry", "NodeEntry", "ParamEntry", "ProjectRef", "RuleEntry",
           "ScheduleEntry", "ScheduleRef", "WatchEntry", "WorkflowEntry"]

FORMAT: Literal[1] = 1


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class NodeEntry(_Entry):
    """One task of a workflow's graph (the same for a workflow in the catalogue and a run's spec)."""

    name: str
    task: str
    kind: str = "python"  # python, shell, http
    queue: str = "default"
    upstream: list[str] = []
    depends: str = "all_succeeded"
    retries: int = 0
    timeout_s: float | None = None
    mapped: bool = False  # runs once per item of a list (map_over)
    max_parallel: int | None = None
    when: str | None = None  # the condition that skips it when false


class ParamEntry(_Entry):
    name: str
    required: bool


class WorkflowEntry(_Entry):
    name: str
    version: str  # the digest of its graph, as runs record it
    kind: Literal["python", "yaml"]
    params: list[ParamEntry] = []
    timeout_s: float | None = None
    concurrency: int | None = None
    nodes: list[NodeEntry]


class ScheduleRef(_Entry):
    name: str
    overlap: str


class RuleEntry(_Entry):
    name: str
    types: list[str]
    source: str | None = None
    filter: str | None = None  # the rule's `match` conditions, as text
    workflow: str
    params: dict[str, str] = {}  # parameter -> its template as written (non-strings as JSON)
    enabled: bool = True
    schedules: list[ScheduleRef] = []  # the schedules whose ticks it matches, with their overlap policy
    concurrency: int | None = None  # its workflow's limit on runs at once
    hold: str | None = None  # its hold-back flow control as written: "debounce: key=data.c, period_s=30"


class ScheduleEntry(_Entry):
    name: str
    cron: str
    timezone: str
    enabled: bool = True
    type: str = "schedule.fired"
    source: str
    catchup: str
    overlap: str
    rules: list[str] = []  # the rules its ticks match


class HookEntry(_Entry):
    name: str
    path: str  # where it is served, e.g. /hooks/github
    verify: str  # how requests are authenticated: github, stripe, slack, standard, token, none
    source: str
    enabled: bool = True
    rules: list[str] = []  # the rules that name its event source


class WatchEntry(_Entry):
    name: str
    directory: str
    include: list[str] = []
    exclude: list[str] = []
    recursive: bool = True
    events: list[str]
    source: str
    enabled: bool = True
    rules: list[str] = []  # the rules its events match


class ProjectRef(_Entry):
    name: str
    path: str


class Catalog(_Entry):
    format: Literal[1] = FORMAT
    written_at: AwareDatetime
    project: ProjectRef
    ruleset: str | None = None  # the rule-set version the writing engine runs (rules/version.py)
    rules: list[RuleEntry] = []
    workflows: list[WorkflowEntry] = []
    schedules: list[ScheduleEntry] = []
    hooks: list[HookEntry] = []
    watches: list[WatchEntry] = []
