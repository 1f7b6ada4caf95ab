"""⑧ The waiters of an event type, decoded once and indexed by the value their correlation needs.

Matching an event used to decode every waiter of its type (each holding the run's params and results)
and evaluate the pattern and the correlation of each: cost waiters × size, per batch. Now:

    decoded once   a waiter's stored bytes are decoded the first time they are read and kept while they
                   stay in Redis (`WaiterCache`, keyed by those bytes: a rewritten waiter is decoded again)
    indexed        a correlation with an equality the engine can index (`waiting.correlation_key`:
                   `data.<path> == params.<path>`, alone or a top-level `&&` term) files the waiter
                   under its side's value; an event is evaluated against the waiters filed under its
                   own value only, plus those that cannot be indexed (`Candidates.for_event`)

The index only narrows: every candidate still goes through `Waiter.test` (pattern and the whole
correlation), so the matches are the same as evaluating every waiter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..jsonutil import loads
from ..workflows.waiter import Waiter, index_value, path_value

__all__ = ["Candidates", "WaiterCache"]

log = logging.getLogger(__name__)

_Indexed = tuple[Waiter, tuple[str, tuple[Any, ...]] | None]


class Candidates:
    """The waiters of one event type, filed by the value their correlation requires."""

    def __init__(self, waiters: list[_Indexed]) -> None:
        self.rest: list[Waiter] = []
        self.indexed: dict[str, dict[tuple[Any, ...], list[Waiter]]] = {}
        for waiter, key in waiters:
            if key is None:
                self.rest.append(waiter)
            else:
                self.indexed.setdefault(key[0], {}).setdefault(key[1], []).append(waiter)
        self.count = len(waiters)

    def for_event(self, view: Mapping[str, Any]) -> list[Waiter]:
        """The waiters `view` (an event's rule view) may match: an indexed one only when the event's value
        is the one it is filed under (absent or not a scalar: it cannot be equal)."""
        out = list(self.rest)
        for path, by_value in self.indexed.items():
            key = index_value(path_value(view, path))
            if key is not None:
                out += by_value.get(key, ())
        return out


class WaiterCache:
    """Decoded waiters per event type, kept between batches for as long as their bytes are in Redis."""

    def __init__(self) -> None:
        self._types: dict[str, tuple[dict[bytes, _Indexed | None], Candidates]] = {}

    def candidates(self, event_type: str, fields: Mapping[bytes, bytes]) -> Candidates:
        """The waiters of `event_type`, from the hash read (`fields`): decoded only when new or changed."""
        old, index = self._types.get(event_type, ({}, None))
        if index is not None and len(old) == len(fields) and all(raw in old for raw in fields.values()):
            return index
        decoded = {raw: old[raw] if raw in old else _decode(raw) for raw in fields.values()}
        index = Candidates([d for d in decoded.values() if d is not None])
        if decoded:
            self._types[event_type] = (decoded, index)
        else:
            self._types.pop(event_type, None)
        return index


def _decode(raw: bytes) -> _Indexed | None:
    try:
        waiter = Waiter.from_dict(loads(raw))
    except (KeyError, ValueError, TypeError) as exc:
        log.warning("a waiter in Redis cannot be read (%s: %s); skipped", type(exc).__name__, exc)
        return None
    return waiter, waiter.index_key()
