"""④ A run's task logs, as the CLI, the API and the UI read them: which attempts, and following them live.

    read_logs(client, keys, run_id, node=None, attempt=None, after=0, skip=0) -> RunLogs
        one read: every task's latest attempt (node=None), or one task's (a mapped task: each item's),
        or attempt `attempt` of those; `after` skips the lines each attempt's reader already has.

    follower = LogFollower(run_id, node=None, attempt=None)
    follower.poll(client, keys) -> list[Lines | TaskProgress | Notice | End]     the news since the last poll
        until `follower.ended`. The attempts followed change as the run goes on (a retry's attempt
        replaces the one before, after its last lines are read); once the run finished, a poll reads
        every followed attempt once more and ends. The worker writes an attempt's last lines before the
        record that ends it, so none are missed; but an attempt the engine stopped (a cancel, the
        workflow's time limit) goes on in its worker until it notices, and writes its last lines (its
        error) after the run's end: the follower waits for them until the worker closes the attempt's
        log, or CANCEL_GRACE_S at most (a worker that died, or could not write, never closes it).

Bounded: one read returns at most MAX_ATTEMPTS attempts (from the `skip`-th of those asked for) and
READ_MAX_BYTES of lines (whole attempts); `RunLogs.omitted` says how many attempts were left out and the
`skip` that reads on. A follower follows at most the MAX_ATTEMPTS first (from `skip`), says so once
(a `Notice`), and reads at most READ_MAX_BYTES per poll (the rest at the next).

`select_attempts` (pure) decides which attempts a request means; the storage (keys, caps, the marker for
dropped lines) is state/logs.py. A run or task that does not exist is a `LogsNotFound` (HTTP 404 / 422).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis

from ..errors import OrchestratorError
from ..state import logs as storage
from ..state.keys import Keys
from ..state.logs import READ_MAX_BYTES, AttemptLog, human_bytes
from .runs import TERMINAL_STATES, Run, RunStatus, TaskState

__all__ = ["CANCEL_GRACE_S", "FOLLOW_POLL_S", "MAX_ATTEMPTS", "End", "Lines", "LogFollower", "LogsNotFound", "Notice",
           "Omitted", "RunLogs", "TaskProgress", "read_logs", "select_attempts"]

_FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
FOLLOW_POLL_S = 0.5  # how often a follower polls (the worker ships lines as often)
MAX_ATTEMPTS = 100  # attempts one read returns, and a follower follows
CANCEL_GRACE_S = 10.0  # how long a follower waits for the last lines of an attempt the engine stopped


class LogsNotFound(OrchestratorError):
    """The run, task or attempt asked for does not exist; `status` is the HTTP status that says so."""

    def __init__(self, message: str, status: int = 404) -> None:
        super().__init__(message)
        self.status = status


def select_attempts(run: Run, node: str | None = None, attempt: int | None = None) -> list[tuple[str, int]]:
    """The (node, attempt) pairs a request means, in the run's task order: each task's latest attempt, or
    attempt `attempt`; of every task, or of `node` (a mapped task: of each of its items). Tasks that have not
    had that attempt (not dispatched yet) are left out; a `node` the run lacks, or an `attempt` beyond the
    node's attempts so far, is a LogsNotFound."""
    tasks = list(run.tasks.values())
    if node is not None:
        task = run.tasks.get(node)
        if task is None:
            raise LogsNotFound(f"run {run.id} has no task {node!r} (tasks: {', '.join(run.tasks) or 'none'})", 422)
        tasks = run.items_of(node) if task.items is not None else [task]
        if attempt is not None and task.items is None and attempt > task.attempt:
            raise LogsNotFound(f"task {node!r} of run {run.id} has had {task.attempt} attempt(s) so far, "
                               f"not {attempt}", 422)
    if attempt is None:
        return [(t.node, t.attempt) for t in tasks if t.attempt >= 1]
    return [(t.node, attempt) for t in tasks if t.attempt >= attempt]


@dataclass(frozen=True)
class Omitted:
    """The attempts a read left out (over MAX_ATTEMPTS or READ_MAX_BYTES); `skip` reads on from them."""

    attempts: int
    skip: int

    def hint(self, skip: str = "skip=", task: str = "task=", attempt: str = "attempt=") -> str:
        return (f"{self.attempts:,} more attempt(s) not read: one read returns at most {MAX_ATTEMPTS} attempts "
                f"and {human_bytes(READ_MAX_BYTES)} of lines; read on with {skip}{self.skip}, or ask for one "
                f"task ({task}) or attempt ({attempt})")

    def to_dict(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "skip": self.skip, "hint": self.hint()}


@dataclass(frozen=True)
class RunLogs:
    """One read of a run's logs: the run's status, each attempt's lines, and what was left out."""

    run: str
    status: str
    attempts: list[AttemptLog]
    omitted: Omitted | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "status": self.status, "attempts": [a.to_dict() for a in self.attempts],
                "omitted": self.omitted.to_dict() if self.omitted else None}


def load_run(client: redis.Redis, keys: Keys, run_id: str) -> Run:
    """The run, read back from Redis; LogsNotFound when it does not exist (or cannot be read)."""
    fields = client.hgetall(keys.run(run_id))
    try:
        if fields:
            return Run.from_fields(fields)
    except (KeyError, ValueError, TypeError) as exc:
        raise LogsNotFound(f"run {run_id} cannot be read ({type(exc).__name__}: {exc})", 404) from None
    raise LogsNotFound(f"no run {run_id!r} (it may have expired; list runs with `orch runs list` or GET /runs)")


def read_logs(client: redis.Redis, keys: Keys, run_id: str, node: str | None = None, attempt: int | None = None,
              after: int = 0, skip: int = 0) -> RunLogs:
    """The logs of `run_id`'s attempts that `select_attempts` picks, from the `skip`-th, each from its line
    `after` on, within the bounds (see the module docstring)."""
    run = load_run(client, keys, run_id)
    selected = select_attempts(run, node, attempt)
    wanted = [(n, a, after) for n, a in selected[skip:skip + MAX_ATTEMPTS]]
    found = storage.read(client, keys, run.id, wanted)
    left = len(selected) - skip - len(found)
    return RunLogs(run.id, str(run.status), found, Omitted(left, skip + len(found)) if left > 0 else None)


@dataclass(frozen=True)
class Lines:
    """New lines of one attempt (`log.text()` shows them with the marker for dropped ones)."""

    log: AttemptLog


@dataclass(frozen=True)
class TaskProgress:
    """A followed task reached a new state or attempt."""

    node: str
    attempt: int
    state: str


@dataclass(frozen=True)
class Notice:
    """Something the reader should know: attempts the follower does not follow (said once)."""

    text: str
    omitted: int


@dataclass(frozen=True)
class End:
    """The run finished (or expired): nothing more will come."""

    status: str
    duration_s: float | None = None


@dataclass
class LogFollower:
    """Follows a run's logs poll by poll (see the module docstring); sans threads and sleeps, so the CLI and
    the HTTP stream each drive it their own way."""

    run_id: str
    node: str | None = None
    attempt: int | None = None
    after: int = 0
    skip: int = 0
    cancel_grace_s: float = CANCEL_GRACE_S
    ended: bool = False
    _cursors: dict[tuple[str, int], int] = field(default_factory=dict)
    _settled: set[tuple[str, int]] = field(default_factory=set)
    _waiting: dict[tuple[str, int], float] = field(default_factory=dict)  # stopped attempts: since when
    _states: dict[str, tuple[int, str]] = field(default_factory=dict)
    _run: Run | None = None
    _polled: bool = False
    _told: bool = False

    def poll(self, client: redis.Redis, keys: Keys) -> list[Lines | TaskProgress | Notice | End]:
        """What happened since the last poll; raises LogsNotFound if the run (or the task) does not exist
        at the first poll."""
        if self.ended:
            return []
        try:
            run = self._load(client, keys)
        except LogsNotFound:
            if self._run is None:
                raise
            self.ended = True
            return [End("expired")]
        selected = select_attempts(run, self.node, self.attempt)
        targets = selected[self.skip:self.skip + MAX_ATTEMPTS]
        out: list[Lines | TaskProgress | Notice | End] = [*self._notice(len(selected) - self.skip - len(targets))]
        out += self._progress(run, targets)
        read_all, found = self._read(client, keys, run, targets)
        out += [Lines(log) for log in found if log.lines or log.dropped]
        if run.status in _FINISHED and read_all and all(k in self._settled for k in targets):
            self.ended = True
            out.append(End(str(run.status), run.duration_s))
        return out

    def _notice(self, left: int) -> list[Notice]:
        if left <= 0 or self._told:
            return []
        self._told = True
        return [Notice(f"following {MAX_ATTEMPTS} attempts (from the {self.skip + 1}th of the run's task order); "
                       f"{left:,} more are not followed: follow one task (task=) or the next ones "
                       f"(skip={self.skip + MAX_ATTEMPTS})", left)]

    def _load(self, client: redis.Redis, keys: Keys) -> Run:
        """The run, read again only when its version moved (a fanned-out run is large; most polls see none)."""
        if self._run is not None:
            version = client.hget(keys.run(self.run_id), "v")
            if version is not None and int(version) == self._run.version:
                return self._run
        self._run = load_run(client, keys, self.run_id)
        return self._run

    def _progress(self, run: Run, targets: list[tuple[str, int]]) -> list[TaskProgress]:
        out = []
        for node, _ in targets:
            state = (run.tasks[node].attempt, str(run.tasks[node].state))
            if self._states.get(node) != state:
                self._states[node] = state
                out.append(TaskProgress(node, state[0], state[1]))
        return out

    def _read(self, client: redis.Redis, keys: Keys, run: Run, targets: list[tuple[str, int]]
              ) -> tuple[bool, list[AttemptLog]]:
        """Read the targets not settled yet, and once more those the run left behind (a retry replaced them),
        within READ_MAX_BYTES (the rest at the next poll); whether all were read, and what was."""
        behind = [k for k in self._cursors if k not in targets and k not in self._settled]
        wanted = [k for k in (*targets, *behind) if k not in self._settled]
        start = 0 if self._polled else self.after  # `after` is for the attempts of the first poll
        self._polled = True
        found = storage.read(client, keys, run.id, [(n, a, self._cursors.get((n, a), start)) for n, a in wanted])
        finished = run.status in _FINISHED
        for (node, attempt), log in zip(wanted, found, strict=False):
            self._cursors[(node, attempt)] = log.next
            if (node, attempt) in behind or self._over(run, node, attempt, log, finished):
                self._settled.add((node, attempt))  # read after its end: nothing more will come
        return len(found) == len(wanted), found

    def _over(self, run: Run, node: str, attempt: int, log: AttemptLog, finished: bool) -> bool:
        """Whether no more lines of the attempt will come: the run's record says it ended, and if the engine
        stopped it while a worker ran it, that worker closed its log (or CANCEL_GRACE_S passed)."""
        if not (finished or _attempt_over(run, node, attempt)):
            return False
        if not _stopped_while_running(run, node, attempt, log):
            return True
        since = self._waiting.setdefault((node, attempt), time.monotonic())
        return time.monotonic() - since >= self.cancel_grace_s


def _attempt_over(run: Run, node: str, attempt: int) -> bool:
    """Whether the run's record says `node`'s attempt `attempt` ended (its last lines were written before,
    unless the engine stopped it: see `_stopped_while_running`)."""
    task = run.tasks[node]
    return task.attempt > attempt or task.state in TERMINAL_STATES or task.state is TaskState.RETRYING


def _stopped_while_running(run: Run, node: str, attempt: int, log: AttemptLog) -> bool:
    """Whether the engine cancelled the attempt while a worker ran it, and that worker has not closed its
    log yet: it writes its last lines (its TaskCancelled) once it notices."""
    task = run.tasks[node]
    return (task.state is TaskState.CANCELLED and task.attempt == attempt and not log.closed
            and (task.started_at is not None or log.exists))
