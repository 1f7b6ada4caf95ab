"""③ Reloading rules and workflows without a restart, every engine on one rule-set version.

Redis is the arbiter: `<p>:ruleset` names the active version (rules/version.py), `<p>:ruleset:data` holds
its rule configs and workflow digests (state/ruleset.py). A version becomes active when it is published:
by an engine when it starts (the last started wins, as with the catalogue), by an engine's project watcher
when the files change, and by `orch reload`. A project that does not load (ConfigError) is never published:
the old version keeps running and the refusal is logged with file, line and field, counted
(`orch_project_reloads_total{result="refused"}`) and shown in the engine's view.

How an engine keeps to the active version (`Reloader`):
    check      a maintenance chore, every `engine_reload_check_s`: one GET of the version; when it
               changed, switch: the engine's own copy if it is that version, else the published rule
               configs over its own workflows, when their digests are the version's
    guard      every commit of a batch with events WATCHes `<p>:ruleset` and reads it: such a batch
               planned under a version that is no longer active is never committed; it is planned again
               under the new one (`consistently`), so it is planned and committed against exactly one
               version (a batch of records and timers needs no version: runs carry their spec)
    swap       between batches only, in the engine's thread: `Engine._project` (rules index, workflows,
               schedules) and `Engine._current` (the workflow specs) are replaced together
    behind     an engine that cannot load the active version (its copy lacks a workflow the rules name,
               or has another version of one) keeps its old version and plans no event: ProjectBehind at
               a batch with events; it hands back the events it holds and reads results only, while
               records, timers and chores go on (engine/behind.py). It tries the switch again every
               check, and says so in its log, `orch_project_reloads_total{result="behind"}`, its view
    view       `<p>:ruleset:engines`: the version each engine runs, the one it wants, why not, and the
               workflow digests of its own copy (what `orch reload` checks before publishing); what
               `orch reload --wait` and `orch_ruleset_info` show; written by reloadview.py

Workflow modules are Python: a reload loads the project again, which re-imports them (project.py forgets
the `workflows` modules first). Whatever a module raises at import, SystemExit and KeyboardInterrupt too
(the engine's signals set its stop event, so these come from the module's code), is a refused change; a
module that blocks at import blocks the reload, and the engine's thread with it, until it returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import redis

from ..catalog import PublishCatalog
from ..errors import ConfigError, OrchestratorError
from ..events.stream import Entry
from ..project import Project, with_rules
from ..project_files import fingerprint
from ..rules.version import ruleset_version
from ..settings import Settings
from ..state.ruleset import RulesetError, active_version, publish, publisher, read_active, workflow_mismatch
from .batch import Batch
from .behind import batch_needs_rules, hand_back, needs_rules, read_results_only, split
from .reloadview import VersionView
from .watch import watch_project_files

if TYPE_CHECKING:
    from .loop import Engine

__all__ = ["ProjectBehind", "Reloader", "Replan", "describe_issues"]

log = logging.getLogger(__name__)

T = TypeVar("T")
ISSUES_SHOWN = 10


class Replan(Exception):  # noqa: N818 - a signal between the commit and `consistently`, not an error
    """The active version changed after the batch was planned: plan it again."""


class ProjectBehind(OrchestratorError):
    """This engine cannot load the active rule-set version: it plans no event until it can."""


def describe_issues(exc: ConfigError) -> str:
    """The first issues of a ConfigError, each `file:line: field: message`, on one line each."""
    lines = [str(issue) for issue in exc.issues[:ISSUES_SHOWN]]
    more = len(exc.issues) - ISSUES_SHOWN
    return "\n".join(lines + ([f"... and {more} more"] if more > 0 else []))


class Reloader:
    """Keeps one engine on the active rule-set version (see the module docstring); a maintenance chore."""

    def __init__(self, engine: Engine, project: Project) -> None:
        if not project.ruleset:  # a project put together by hand rather than loaded
            project.ruleset = ruleset_version(project.rule_configs,
                                              {n: w.spec.digest for n, w in project.workflows.items()})
        self._engine = engine
        self.project = project  # what the engine runs
        self._local = project  # the last good load of this engine's own copy (its workflows)
        self._files = fingerprint(project.root)  # its files when they were last loaded
        self._loader: Callable[[], Project] | None = None
        self._changed = threading.Event()  # set by the watcher: this engine's files changed
        self._watching = False  # whether its files are watched (then each check also compares their fingerprint)
        self._started = False
        self._wanted = project.ruleset
        self._behind: str | None = None
        self._failed: tuple[str, str] | None = None  # (wanted, local version) that could not be loaded
        self._refused: str | None = None
        self._report = VersionView(engine)  # its view of the versions, and its reload counter (reloadview.py)

    @property
    def key(self) -> str:
        return self._engine.keys.ruleset

    # -- wiring ----------------------------------------------------------------------------------

    def behind(self) -> str | None:
        """Why this engine is not on the active rule-set version, or None (a readiness condition)."""
        return self._behind

    def reload_from(self, loader: Callable[[], Project]) -> None:
        """How to load this engine's own copy of the project again (with the trigger sections)."""
        self._loader = loader

    def watch(self, root: Path, settings: Settings, stop: threading.Event) -> threading.Thread:
        """Watch the project's files (watch.py); a burst of changes marks one reload, which the engine's
        thread makes at its next check (which also compares the files' fingerprint, should the watcher miss a
        change or stop). Ends when `stop` is set."""
        self._watching = True
        return watch_project_files(root, settings, stop, self.changed)

    def changed(self) -> None:
        """Mark this engine's files as changed (what the watcher does): reload them at the next check."""
        self._changed.set()

    # -- the chore -------------------------------------------------------------------------------

    def every_s(self, settings: Settings) -> float:
        return settings.engine_reload_check_s

    def run(self, now_s: float, force: bool) -> None:
        try:
            self.check()
        except ProjectBehind:  # still behind (said when it fell behind): its view says so
            self._view(self._engine.client)

    def check(self) -> None:
        """Publish this engine's version at its start, reload its files when they changed, and switch to
        the active version when it is another; ProjectBehind when this engine cannot load it."""
        client = self._engine.client
        if not self._started:
            self._start(client)
        if self._changed.is_set() or (self._watching and self._files_differ()):  # or the watcher missed it
            self._changed.clear()
            self._reload_local(client)
        active = active_version(client, self._engine.keys)
        if active is None:
            self._announce(client, self.project, "republished (the key was missing)")
        elif active != self.project.ruleset or self._behind:
            self._switch(client, active)
        self._view(client)

    # -- batches ---------------------------------------------------------------------------------

    def consistently(self, work: Callable[[], T], entries: Iterable[Entry] = ()) -> T:
        """Plan and commit with `work` under one version: when the commit finds the version replaced, switch
        and plan again. ProjectBehind when `entries` need the rules and this engine cannot load the active
        version."""
        if not self._started or (self._behind and any(needs_rules(e, self._engine.keys) for e in entries)):
            self.check()
        while True:
            try:
                return work()
            except Replan:
                self.check()

    def guard_key(self, batch: Batch) -> str | None:
        """The key a commit of `batch` must WATCH and read with its runs (a batch with events: the version
        it was planned under), or None."""
        return self.key if batch_needs_rules(batch) else None

    def verify(self, raw: bytes | None) -> None:
        """Replan unless `raw`, the version read under WATCH in the commit, is the one the batch was planned
        under (none published yet counts as this one)."""
        if raw is not None and raw.decode(errors="replace") != self.project.ruleset:
            raise Replan(raw)

    def keep(self, entries: list[Entry]) -> list[Entry]:
        """`entries` but, while this engine is behind, those that need the rules: handed back."""
        if not self._behind or not entries:
            return entries
        rules, rest = split(entries, self._engine.keys)
        if rules:
            hand_back(self._engine, rules)
        return rest

    def hand_back(self) -> None:
        """The engine loop met ProjectBehind: hand back what it holds that needs the rules; the rest next step."""
        try:
            self._engine._unfinished = self.keep(self._engine._unfinished)
            self._view(self._engine.client)
        except redis.RedisError as exc:
            log.warning("engine %s: cannot hand back the events it holds (%s)", self._name, exc)

    # -- steps -----------------------------------------------------------------------------------

    def _start(self, client: redis.Redis) -> None:
        """Publish this engine's version (the last started wins). Marked started only once that went
        through: a Redis error here is ridden out and the start tried again, never skipped, or a new
        engine would switch to the old version it found."""
        if active_version(client, self._engine.keys) != self.project.ruleset:
            self._announce(client, self.project, "engine start")
        self._started = True
        self._log_project(self.project)

    def _reload_local(self, client: redis.Redis) -> None:
        """Load this engine's files again; publish them when they load (and are another version)."""
        if self._loader is None:
            return
        try:
            loaded = self._load_local(self._loader)
        except ConfigError as exc:
            self._refuse(client, describe_issues(exc))
            return
        except BaseException as exc:  # noqa: BLE001 - whatever a changed project does (even sys.exit), the old version runs on
            log.exception("engine %s: loading the changed project failed", self._name)
            self._refuse(client, f"{type(exc).__name__}: {exc}")
            return
        self._refused, self._failed = None, None
        if loaded.ruleset != active_version(client, self._engine.keys):
            self._announce(client, loaded, "project watcher")
        elif loaded.ruleset == self.project.ruleset:
            self._use(loaded, "its files changed")  # the same rules and graphs; schedules or code may differ

    def _files_differ(self) -> bool:
        """Whether this engine's files changed since they were last loaded: a few stat calls."""
        return self._loader is not None and fingerprint(self._local.root) != self._files

    def _load_local(self, loader: Callable[[], Project]) -> Project:
        """This engine's own copy, loaded again (ConfigError: it does not load; the last good load stays).
        Each state of the files is tried once, whether it loads or not."""
        self._files = fingerprint(self._local.root)
        self._local = loader()
        self._report.soon()  # its view shows its copy's workflows: written at the next check
        return self._local

    def _announce(self, client: redis.Redis, project: Project, how: str) -> None:
        old = publish(client, self._engine.keys, project, publisher(how))
        if old != project.ruleset:
            log.info("engine %s: published rule-set version %s (%s; was %s)", self._name, project.ruleset, how,
                     old or "none")

    def _refuse(self, client: redis.Redis, problems: str) -> None:
        self._refused = problems
        log.error("engine %s: project change refused; still running rule-set version %s. Fix these and save "
                  "again (`orch validate` shows them):\n%s", self._name, self.project.ruleset, self._refused)
        self._report.count(client, "refused")
        self._report.soon()

    def _switch(self, client: redis.Redis, wanted: str) -> None:
        if self._failed == (wanted, self._local.ruleset) and fingerprint(self._local.root) == self._files:
            raise ProjectBehind(self._behind or f"cannot load rule-set version {wanted}")
        self._wanted = wanted
        try:
            candidate = self._candidate(client, wanted)
        except redis.RedisError:
            raise
        except Exception as exc:  # noqa: BLE001 - ConfigError, RulesetError, or a bug: this engine stays behind
            if not isinstance(exc, ConfigError | RulesetError):
                log.exception("engine %s: loading rule-set version %s failed", self._name, wanted)
            reason = describe_issues(exc) if isinstance(exc, ConfigError) else str(exc)
            self._fall_behind(client, wanted, reason)
            raise ProjectBehind(self._behind or reason) from None
        self._behind, self._failed = None, None
        read_results_only(self._engine.consumer, self._engine.keys, False)
        self._use(candidate, f"the active version is {wanted}")
        self._report.count(client, "ok")

    def _candidate(self, client: redis.Redis, wanted: str) -> Project:
        if self._local.ruleset == wanted:
            return self._local
        active = read_active(client, self._engine.keys)
        if active is None or active.version != wanted:
            raise RulesetError(f"the active version changed while it was read (now {active and active.version})")
        missing = workflow_mismatch(active, self._local)
        if missing and self._loader is not None and self._files_differ():
            self._load_local(self._loader)  # this engine's copy was updated, and no watcher said so (yet)
            missing = workflow_mismatch(active, self._local)
        if missing:
            raise RulesetError("; ".join(missing) + ": deploy the same workflows to this engine (or run "
                               "`orch reload` from a copy this engine has)")
        candidate = with_rules(self._local, active.rules, f"{self._engine.keys.ruleset_data} (version {wanted})")
        if candidate.ruleset != wanted:
            raise RulesetError(f"its rules read back as version {candidate.ruleset}, not {wanted} "
                               "(engines of different orch versions?)")
        return candidate

    def _fall_behind(self, client: redis.Redis, wanted: str, reason: str) -> None:
        self._failed = (wanted, self._local.ruleset)
        self._behind = f"cannot load rule-set version {wanted}: {reason}"
        log.error("engine %s: %s; it keeps version %s loaded and plans no event until it can load %s (task "
                  "results, cancels and timers go on)", self._name, self._behind, self.project.ruleset, wanted)
        read_results_only(self._engine.consumer, self._engine.keys, True)
        hand_back(self._engine, [], scan=self._engine.settings.engine_batch_size)  # the events it holds
        self._report.count(client, "behind")
        self._report.soon()

    def _use(self, project: Project, why: str) -> None:
        """Swap the engine's project: between batches, in the engine's thread."""
        old, self.project = self.project, project
        self._engine._project = project
        self._engine._current = {name: wf.spec for name, wf in project.workflows.items()}
        self._report.soon()
        if old.ruleset == project.ruleset:
            log.info("engine %s: project loaded again (%s); rule-set version %s unchanged", self._name, why,
                     project.ruleset)
        else:
            log.info("engine %s: now running rule-set version %s (was %s; %s): %d rules, %d workflows", self._name,
                     project.ruleset, old.ruleset, why, len(project.rules), len(project.workflows))
        for chore in self._engine.maintenance.chores:
            if isinstance(chore, PublishCatalog):  # what `orch api` shows of the project, written now
                chore.replace(project)
                chore.run(time.monotonic(), True)

    # -- reporting -------------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        return self._engine.consumer.consumer

    def _view(self, client: redis.Redis) -> None:
        self._report.write(client, self.project.ruleset, self._wanted, self._behind, self._refused, self._local)

    def _log_project(self, project: Project) -> None:
        log.info("engine %s: rule-set version %s: %d rules, %d workflows; reading %s", self._name, project.ruleset,
                 len(project.rules), len(project.workflows), ", ".join(self._engine.consumer.streams))
        if not project.rules:
            log.warning("engine: no rules in %s/rules: events will be acknowledged without starting runs "
                        "(is --project / ORCH_PROJECT right?)", project.root)

