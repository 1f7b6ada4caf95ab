"""④ Runs in Redis: writing a run's changes inside the engine's transaction, and reading runs back.

Writes happen only through `write_change`, queued on the engine's MULTI/EXEC; reads are plain.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import redis

from ..jsonutil import loads
from ..workflows.advance import Change
from ..workflows.runs import Run, RunStatus
from .keys import Keys

__all__ = ["RunStore", "pairs_to_fields"]

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
        run, key = change.run, self.keys.run(change.run.id)
        if change.created:
            pipe.hset(key, mapping={**run.to_fields(spec=True), "v": 1})
            created = _ms(run.created_at)
            pipe.zadd(self.keys.runs, {run.id: created})
            pipe.zadd(self.keys.runs_by_workflow(run.workflow), {run.id: created})
            pipe.zadd(self.keys.runs_by_status(run.status), {run.id: created})
        elif change.tasks or change.finished or change.reopened or change.promoted:
            pipe.hset(key, mapping=run.to_fields(change.tasks))
            pipe.hincrby(key, "v", 1)
            if change.reopened:  # a retried run: running again, kept until it finishes
                pipe.zrem(self.keys.runs_by_status(RunStatus.FAILED), run.id)
                pipe.zrem(self.keys.runs_by_status(RunStatus.CANCELLED), run.id)
                pipe.zadd(self.keys.runs_by_status(RunStatus.RUNNING), {run.id: _ms(run.created_at)})
                pipe.persist(key)
            if change.promoted:  # a queued run got its slot
                pipe.zrem(self.keys.runs_by_status(RunStatus.QUEUED), run.id)
                pipe.zadd(self.keys.runs_by_status(RunStatus.RUNNING), {run.id: _ms(run.created_at)})
            if change.finished:
                pipe.zrem(self.keys.runs_by_status(RunStatus.RUNNING), run.id)
                pipe.zrem(self.keys.runs_by_status(RunStatus.QUEUED), run.id)
                pipe.zadd(self.keys.runs_by_status(run.status), {run.id: _ms(run.created_at)})
        if change.finished:
            pipe.expire(key, int(self._retention_s))

    # -- reads ---------------------------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        fields = self._redis.hgetall(self.keys.run(run_id))
        return Run.from_fields(fields) if fields else None

    def list(self, *, status: str | None = None, workflow: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Summaries of the newest runs, optionally of one status and/or workflow."""
        index = (self.keys.runs_by_status(status) if status else
                 self.keys.runs_by_workflow(workflow) if workflow else self.keys.runs)
        out: list[dict[str, Any]] = []
        for meta in self._metas(index):
            if (status and meta["status"] != status) or (workflow and meta["workflow"] != workflow):
                continue
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
        """Drop index entries of runs created before the retention window (their hashes expire on their own)."""
        cutoff = _ms(now) - int(self._retention_s * 1000)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(self.keys.runs, "-inf", cutoff)
        for status in _TERMINAL_STATUSES:
            pipe.zremrangebyscore(self.keys.runs_by_status(status), "-inf", cutoff)
        for key in self._redis.scan_iter(match=self.keys.runs_by_workflow("*"), count=500):
            pipe.zremrangebyscore(key, "-inf", cutoff)
        return sum(int(n) for n in pipe.execute())
