"""The catalogue in Redis: the engine writes it (`PublishCatalog`, a maintenance chore), the API reads it.

`orch api` does not load the project's rules and workflows (a broken one must not take the API down),
so what it shows of them is what the engine last wrote to `<p>:catalog`. What is read back is untrusted:
a catalogue that is too large, not JSON or not of the expected shape gives an `{"error": ...}` result
that says to restart the engine, never an exception.

    catalog_view(client, keys, now)   the catalogue with each schedule's next firings and each
                                      webhook's delivery counts: what GET /catalog answers
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis
from pydantic import ValidationError

from ..cron import next_firings
from ..jsonutil import dumps, loads
from ..metrics import LABEL_SEP, WEBHOOK_REQUESTS
from ..project import Project
from ..settings import Settings
from ..state.keys import Keys
from .build import build_catalog
from .model import Catalog

__all__ = ["MAX_CATALOG_BYTES", "NEXT_FIRINGS", "NO_CATALOG", "PublishCatalog", "catalog_view", "read_catalog",
           "webhook_deliveries", "write_catalog"]

log = logging.getLogger(__name__)

MAX_CATALOG_BYTES = 16 * 1024 * 1024
NEXT_FIRINGS = 5
REPUBLISH_EVERY_S = 60.0
_RESTART = "restart `orch engine` to write it again"
NO_CATALOG = "no project catalogue in Redis yet: `orch engine` writes it when it starts"


def write_catalog(client: redis.Redis, keys: Keys, catalog: dict[str, Any], *, only_if_missing: bool = False) -> bool:
    """Store `catalog` (from build_catalog); with `only_if_missing`, keep one already there. True if written."""
    return bool(client.set(keys.catalog, dumps(catalog), nx=only_if_missing))


def read_catalog(client: redis.Redis, keys: Keys) -> dict[str, Any] | None:
    """The catalogue (the shape of model.Catalog), None when no engine wrote one, or `{"error": message}`
    when what Redis holds cannot be read. Reads at most MAX_CATALOG_BYTES."""
    pipe = client.pipeline(transaction=False)
    pipe.exists(keys.catalog)
    pipe.getrange(keys.catalog, 0, MAX_CATALOG_BYTES)
    exists, raw = pipe.execute(raise_on_error=False)
    if isinstance(exists, redis.RedisError):
        raise exists
    if not exists:
        return None
    if isinstance(raw, redis.ResponseError):  # WRONGTYPE: the key holds something else
        return _unreadable(f"{keys.catalog} is not a string: {raw}")
    if isinstance(raw, redis.RedisError):
        raise raw
    if len(raw) > MAX_CATALOG_BYTES:
        return _unreadable(f"it is larger than {MAX_CATALOG_BYTES} bytes")
    try:
        return Catalog.model_validate(loads(raw)).model_dump(mode="json")
    except ValueError as exc:  # JSON errors and ValidationError
        return _unreadable(_reason(exc))


def webhook_deliveries(client: redis.Redis, keys: Keys) -> dict[str, dict[str, int]]:
    """Requests each webhook endpoint received since the counters began, by result (accepted, duplicate,
    unauthorized, invalid, ...): `{hook: {result: count}}`, from orch_webhook_requests_total. Fields that
    are not a hook and a result with a whole count are skipped."""
    out: dict[str, dict[str, int]] = {}
    for raw_field, raw_value in client.hgetall(keys.metric(WEBHOOK_REQUESTS.name)).items():
        field, value = raw_field.decode(errors="replace"), raw_value.decode(errors="replace")
        hook, sep, result = field.partition(LABEL_SEP)
        if not sep or LABEL_SEP in result or not value.lstrip("-").isdigit():
            continue
        out.setdefault(hook, {})[result] = int(value)
    return out


def catalog_view(client: redis.Redis, keys: Keys, now: datetime, firings: int = NEXT_FIRINGS) -> dict[str, Any] | None:
    """The catalogue with each enabled schedule's next `firings` (`next`: see cron.next_firings; a schedule
    whose expression or zone cannot be read gets `next_error` instead) and each webhook's delivery counts
    (`deliveries`: {result: count}); None and `{"error": message}` as from read_catalog."""
    catalog = read_catalog(client, keys)
    if catalog is None or "error" in catalog:
        return catalog
    for schedule in catalog["schedules"]:
        schedule["next"] = []
        if schedule["enabled"]:
            try:
                schedule["next"] = next_firings(schedule["cron"], schedule["timezone"], now, firings)
            except ValueError as exc:
                schedule["next_error"] = str(exc)
    counts = webhook_deliveries(client, keys)
    for hook in catalog["hooks"]:
        hook["deliveries"] = counts.get(hook["name"], {})
    return catalog


class PublishCatalog:
    """Engine maintenance chore: write the catalogue at its first turn (the engine's start), then write it
    again only if it went missing (another engine's, newer or older, is kept: the last started wins)."""

    def __init__(self, client: redis.Redis, keys: Keys, project: Project, clock: Callable[[], datetime]) -> None:
        self._client = client
        self._keys = keys
        self._project = project
        self._clock = clock
        self._catalog: dict[str, Any] | None = None
        self._written = False

    def every_s(self, settings: Settings) -> float:
        return REPUBLISH_EVERY_S

    def replace(self, project: Project) -> None:
        """The engine switched to another version of the project: write its catalogue at the next turn."""
        self._project, self._catalog, self._written = project, None, False

    def run(self, now_s: float, force: bool) -> None:
        if self._catalog is None:
            try:
                self._catalog = build_catalog(self._project, self._clock())
            except Exception:  # noqa: BLE001 - a view of the project must never stop the engine
                log.exception("engine: cannot build the project catalogue; the API will not show the project")
                return
        write_catalog(self._client, self._keys, self._catalog, only_if_missing=self._written)
        if not self._written:
            log.info("engine: project catalogue written to %s", self._keys.catalog)
        self._written = True


def _unreadable(reason: str) -> dict[str, Any]:
    return {"error": f"the project catalogue in Redis is unreadable ({reason}); {_RESTART}"}


def _reason(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where or 'the top level'}: {first.get('msg')}"
    return f"not JSON: {exc}"
