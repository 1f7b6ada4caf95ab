"""③ The engine's two hooks for hold-back controls (orchestrator/flow/), called from engine/loop.py:

    take_releases(batch, entries)   results entries of released holds become run requests (release.py)
    hold(batch) -> batch            after planning: the decide script for held-back requests (decide.py),
                                    and the memos of rules whose control a reload removed (`_recalled`)

The decisions' memos (`Batch.memos`) are given their after-commit life (flow/decide.py memo_keep_s) by the
chronicle, with the decision records it writes in the commit's MULTI (chronicle.py).

It also adds the release chore to the engine's maintenance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..errors import EventError, RuleError
from ..events.stream import Entry
from ..flow.decide import Decider
from ..flow.release import RELEASE_FIELD, Released, ReleaseHolds, run_request
from ..project import Project
from . import maintenance
from .batch import Batch
from .maintenance import Maintenance, dead_letter

__all__ = ["FlowControl"]


class Host(maintenance.Host, Protocol):
    """What flow control uses of the engine: what the chores use, and the chores themselves."""

    maintenance: Maintenance


class FlowControl:
    """Hold-back controls (debounce, batch, throttle, rate_limit) for one engine and project."""

    def __init__(self, host: Host, project: Callable[[], Project]) -> None:
        self._host = host
        self._project = project  # the engine's current project: a reload swaps it (engine/reload.py)
        self._built_for: Project | None = None
        self._decider: Decider | None = None
        self._ever: set[str] = set()  # rules that had a hold-back control in this engine's lifetime
        self.releases = ReleaseHolds(host)
        host.maintenance.add(self.releases)

    def _current_decider(self) -> Decider | None:
        """The decider of the current project's hold-back rules, built again after a reload."""
        project = self._project()
        if project is not self._built_for:
            host, rules = self._host, {rule.name: rule for rule in project.rules if rule.hold is not None}
            self._ever.update(rules)
            recalled = self._recalled([rule.name for rule in project.rules if rule.hold is None])
            self._decider = Decider(host.client, host.keys, host.settings, rules, recalled) if rules or recalled else None
            self._built_for = project
        return self._decider

    def _recalled(self, names: list[str]) -> frozenset[str]:
        """Of rules without a hold-back control, those whose decisions under an earlier rule-set version may
        still be remembered: had one in this engine's lifetime, or decided lately by any engine (one MGET of
        their markers, per project built). Their requests look their memo up (decide.py), so a reload that
        removes a control never starts a second run for an event already held (promise 1)."""
        known = {name for name in names if name in self._ever}
        unknown = [name for name in names if name not in known]
        if unknown:
            marks = self._host.client.mget([self._host.keys.flow_ruled(name) for name in unknown])
            known.update(name for name, mark in zip(unknown, marks, strict=True) if mark is not None)
        return frozenset(known)

    def take_releases(self, batch: Batch, entries: list[Entry]) -> list[Entry]:
        """`entries` but the released holds, which are planned into `batch` as the runs they start."""
        rest = []
        for entry in entries:
            if RELEASE_FIELD not in entry.fields or entry.stream != self._host.keys.results:
                rest.append(entry)
                continue
            try:
                request = run_request(self._project(), Released.from_fields(entry.fields))
            except (EventError, RuleError, ValueError, KeyError, TypeError) as exc:
                dead_letter(self._host, entry, 1, f"hold release: {type(exc).__name__}: {exc}")
                continue
            batch.requests.append((entry, [request]))
        return rest

    def hold(self, batch: Batch) -> Batch:
        """`batch` with its held-back requests decided (flow/decide.py)."""
        decider = self._current_decider()
        if decider is not None:
            decider.hold(batch, self._host.now())
        return batch
