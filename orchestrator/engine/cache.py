"""The engine's cache of runs it recently wrote, so a batch re-reads a big run only when it changed.

Every write of a run increments its hash field `v`. Before a batch, the engine sends the versions it
holds; the read script (read_runs.lua) answers "unchanged" for those (an HGET instead of an HGETALL, and no parsing), and
the whole hash for the others. Cached runs are mutated by the batch that applies to them, so after a
failed or aborted commit their entries are dropped and read afresh. Only this engine's committed writes
update the cache; another engine's write bumps `v`, which invalidates it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from ..state.store import pairs_to_fields
from ..workflows.advance import Change
from ..workflows.runs import Run, RunStatus

__all__ = ["RunCache"]


class RunCache:
    """Runs by id, least recently used first; finished runs are not kept."""

    def __init__(self, max_runs: int = 2000) -> None:
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._max = max_runs

    def versions(self, run_ids: Sequence[str]) -> list[str]:
        return [str(self._runs[r].version) if r in self._runs else "" for r in run_ids]

    def resolve(self, run_ids: Sequence[str], replies: Sequence[Any]) -> dict[str, Run | Exception]:
        """The runs as of the read: cached objects where unchanged, parsed hashes otherwise, and the error
        for a hash that cannot be parsed (only the entries about that run fail)."""
        out: dict[str, Run | Exception] = {}
        for run_id, reply in zip(run_ids, replies, strict=True):
            if isinstance(reply, int) and run_id in self._runs:
                self._runs.move_to_end(run_id)
                out[run_id] = self._runs[run_id]
            elif reply and not isinstance(reply, int):
                try:
                    out[run_id] = Run.from_fields(pairs_to_fields(reply))
                except (KeyError, ValueError, TypeError) as exc:
                    out[run_id] = exc
        return out

    def peek(self, run_id: str) -> Run | None:
        """The cached run, if held (as of this engine's last commit of it), without touching its recency."""
        return self._runs.get(run_id)

    def committed(self, changes: Iterable[Change]) -> None:
        """Keep the runs a committed batch wrote, with the versions the write gave them."""
        for change in changes:
            run = change.run
            run.version = 1 if change.created else run.version + 1
            if run.status is RunStatus.RUNNING:
                self._runs[run.id] = run
                self._runs.move_to_end(run.id)
            else:
                self._runs.pop(run.id, None)
        while len(self._runs) > self._max:
            self._runs.popitem(last=False)

    def forget(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            self._runs.pop(run_id, None)
