"""④ Runs in Redis: writing a run's changes inside the engine's transaction, and reading runs back.

Writes happen only through `write_change`, queued on the engine's MULTI/EXEC; reads are plain (many
runs at once in pipelined chunks: `get_many`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import redis

from ..jsonutil import loads
from ..workflows.advance import Change
from ..workflows.runs import Run, RunStatus
from .keys import Keys
from .logs import attempt_log_keys
from .pipeline import flat

__all__ = ["RunStore", "pairs_to_fields"]

log = logging.getLogger(__name__)

_TERMINAL_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def pairs_to_fields(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A flat HGETALL reply from Lua as a dict."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


class RunStore:
    """Reads and writes runs for one key prefix."""

    def __init__(self, client: redis.Redis, keys: Keys, *, retention_s: float) -> None:
        self._redis = client
        self.keys = keys
        self._retention_s = retention_s

    # -- writes (queued on the engine's transaction) ---------------------------------------------

    def write_change(self, pipe: Any, change: Change) -> None:
        """Queue the change's writes on `pipe` (raw commands: redis-py's methods cost more per run than the
        rest of this)."""
        run, key, send = change.run, self.keys.run(change.run.id), pipe.execute_command
        created = _ms(run.created_at)
        if change.created:
            send("HSET", key, *flat({**run.to_fields(spec=True), "v": 1}))
            send("ZADD", self.keys.runs, created, run.id)
            send("ZADD", self.keys.runs_by_workflow(run.workflow), created, run.id)
            send("SADD", self.keys.run_workflows, run.workflow)
        elif change.dirty:
            send("HSET", key, *flat(run.to_fields(change.tasks)))
            send("HINCRBY", key, "v", 1)
        if change.was is not run.status:
            self._move(pipe, run, change.was, created)

    def _move(self, pipe: Any, run: Run, was: RunStatus | None, created_ms: int) -> None:
        """The run's status changed (or it is new): move it between the status indexes; a run that
        finished expires after the retention, with its attempts' logs; one running again (a retry) is kept."""
        send = pipe.execute_command
        if was is not None:
            send("ZREM", self.keys.runs_by_status(was), run.id)
            send("ZREM", self.keys.runs_by_workflow_status(run.workflow, was), run.id)
        send("ZADD", self.keys.runs_by_status(run.status), created_ms, run.id)
        send("ZADD", self.keys.runs_by_workflow_status(run.workflow, run.status), created_ms, run.id)
        for key in (self.keys.run(run.id), *attempt_log_keys(self.keys, run)):  # its attempts' logs go with it
            if run.status in _TERMINAL_STATUSES:
                send("EXPIRE", key, int(self._retention_s))
            elif was in _TERMINAL_STATUSES:
                send("PERSIST", key)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        fields = self._redis.hgetall(self.keys.run(run_id))
        return Run.from_fields(fields) if fields else None

    def get_many(self, run_ids: Sequence[str], *, chunk: int = 100) -> list[Run]:
        """The runs of `run_ids` that exist and can be read, in order: one round trip (a pipeline of
        HGETALLs) per `chunk` runs, never one per run; `chunk` bounds what one reply holds (a fanned-out
        run can be large). A hash that is not a run (read back from Redis: untrusted) is logged and left
        out, so one corrupt run cannot stop the engine's maintenance."""
        out: list[Run] = []
        for start in range(0, len(run_ids), chunk):
            pipe = self._redis.pipeline(transaction=False)
            for run_id in run_ids[start:start + chunk]:
                pipe.hgetall(self.keys.run(run_id))
            for run_id, fields in zip(run_ids[start:start + chunk], pipe.execute(), strict=True):
                try:
                    out += [Run.from_fields(fields)] if fields else []
                except (KeyError, ValueError, TypeError) as exc:
                    log.warning("run %s cannot be read (%s: %s); skipped", run_id, type(exc).__name__, exc)
        return out

    def index(self, *, status: str | None = None, workflow: str | None = None) -> str:
        """The index holding exactly the runs of `status` and/or `workflow` (all runs without either)."""
        if status and workflow:
            return self.keys.runs_by_workflow_status(workflow, status)
        if status:
            return self.keys.runs_by_status(status)
        return self.keys.runs_by_workflow(workflow) if workflow else self.keys.runs

    def list(self, *, status: str | None = None, workflow: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Summaries of the newest runs, optionally of one status and/or workflow: one index read, whatever
        the filters (an entry whose run expired meanwhile is skipped)."""
        out: list[dict[str, Any]] = []
        for meta in self._metas(self.index(status=status, workflow=workflow), page=limit):
            out.append(meta)
            if len(out) >= limit:
                break
        return out

    def _metas(self, index: str, page: int = 200) -> Iterator[dict[str, Any]]:
        start = 0
        while True:
            ids = self._redis.zrevrange(index, start, start + page - 1)
            if not ids:
                return
            pipe = self._redis.pipeline(transaction=False)
            for run_id in ids:
                pipe.hget(self.keys.run(run_id.decode()), "meta")
            for raw in pipe.execute():
                if raw is not None:
                    yield loads(raw)
            start += page

    def trim_indexes(self, now: datetime) -> int:
        """Drop index entries of finished runs created before the retention window (their hashes expire on
        their own). Work grows with the workflows, never with the keyspace: no SCAN."""
        cutoff = _ms(now) - int(self._retention_s * 1000)
        workflows = sorted(w.decode() for w in self._redis.smembers(self.keys.run_workflows))
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(self.keys.runs, "-inf", cutoff)
        for status in _TERMINAL_STATUSES:
            pipe.zremrangebyscore(self.keys.runs_by_status(status), "-inf", cutoff)
            for workflow in workflows:
                pipe.zremrangebyscore(self.keys.runs_by_workflow_status(workflow, status), "-inf", cutoff)
        for workflow in workflows:
            pipe.zremrangebyscore(self.keys.runs_by_workflow(workflow), "-inf", cutoff)
        return sum(int(n) for n in pipe.execute())
