"""① File watches: changes in a project's watched directories become `file.*` events.

`FileWatcher(client, settings, project.watches.values()).run(stop)` watches every enabled watch, one
thread each, until `stop` (a `threading.Event`) is set. Event types: `file.added`, `file.modified`,
`file.deleted` (prefix `file`, or the watch's `type_prefix`); source `/watches/<name>` (or `source`);
subject and `data.path`: the path relative to the watched directory (posix); data also holds `watch`,
`size` (bytes) and `mtime` (UTC ISO 8601), both null for a deletion.

How nothing is lost or announced twice:

* The last known state of every watch is a Redis hash, `<prefix>:watch:<name>:files`, relative path ->
  `"size:mtime_ns"`. A change is what differs between that hash and the directory, so a watcher that
  starts (or comes back after Redis was unreachable) first scans the directory and announces what was
  added, modified or deleted while nobody watched, then follows notifications from watchfiles. Every
  `resync_s` it scans again, in case the OS dropped a notification.
* Debounce: a file is announced once no change to it was seen for the watch's `debounce_ms` (at the
  latest after 10 windows of changes without pause), with its size and mtime at that moment, so a
  burst of writes is one event.
* Events are published first, then the hash is updated (one MULTI/EXEC). A crash in between announces
  the change again on the next start, with the same event id (derived from watch, path, kind and
  size:mtime_ns), which the stream drops as a duplicate of (source, id) within ORCH_EVENT_DEDUP_WINDOW_S;
  so several replicas may watch one directory (and a file deleted and restored with the same size and
  mtime within that window is not announced again).
* A watched directory that disappears (an unmounted share), or is replaced by a symlink, is reported
  and waited for; its files are not announced as deleted. Symlinks inside a watched directory are
  ignored, and so is every path through one (watchfiles follows symlinked directories: they could lead
  outside the allowed roots), and names that are not valid UTF-8 or contain control characters.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import redis
import watchfiles

from orchestrator.backoff import Backoff, RideOut
from orchestrator.events.publish import Published, Publisher
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys

from .changes import FileChange, acceptable, change_event, diff_states, scan, signature
from .config import WatchConfig

__all__ = ["FileWatcher", "WatchRootGoneError"]

log = logging.getLogger(__name__)

COMMIT_CHUNK = 1000  # changes published, then recorded, per round: bounds what a crash re-announces
MAX_WAIT_DEBOUNCES = 10  # a file changing without pause is announced after 10 debounce windows anyway
_REDIS_GLOB = re.compile(r"([*?\[\]\\])")
_LOGGED_PER_BATCH = 10


class WatchRootGoneError(OSError):
    """The watched directory itself is missing; the watcher waits for it instead of announcing deletions."""


class _Watch:
    """One watch: its state in Redis, its scans and its watchfiles loop."""

    def __init__(self, config: WatchConfig, client: redis.Redis, keys: Keys, settings: Settings, *,
                 tick_ms: int, resync_s: float | None, max_backoff_s: float) -> None:
        self.config = config
        self.synced = threading.Event()
        self._redis = client
        self._key = keys.watch_files(config.name)
        self._publisher = Publisher(client, keys, dedup_window_s=settings.event_dedup_window_s,
                                    max_bytes=settings.event_max_bytes, trigger="file")
        self._tick_ms, self._resync_s = tick_ms, resync_s
        self._ride = RideOut("watch", log, keys, Backoff(initial_s=0.2, max_s=max_backoff_s))

    # -- the loop ------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Watch until `stop` is set; Redis outages and a missing directory are retried with backoff."""
        name = self.config.name
        while not stop.is_set():
            try:
                self._watch(stop)
                continue
            except redis.RedisError as exc:  # the next start rescans, so nothing is lost meanwhile
                stop.wait(self._ride.failed(exc))
                continue
            except WatchRootGoneError as exc:
                problem = str(exc)
            except Exception as exc:  # noqa: BLE001 - a watch keeps going; the next start rescans
                log.exception("watch %s: unexpected error", name)
                problem = f"{type(exc).__name__}: {exc}"
            delay = self._ride.backoff.next_s()
            log.warning("watch %s: %s; rescanning in %.1f s", name, problem, delay)
            stop.wait(delay)
        log.info("watch %s: stopped", name)

    def _watch(self, stop: threading.Event) -> None:
        config = self.config
        self._check_root()
        changes = watchfiles.watch(
            config.path, watch_filter=None, debounce=self._tick_ms, step=min(50, self._tick_ms),
            stop_event=stop, rust_timeout=self._tick_ms, yield_on_timeout=True, raise_interrupt=False,
            recursive=config.recursive, force_polling=True if config.poll_ms else None,
            poll_delay_ms=config.poll_ms or 300, ignore_permission_denied=True)
        quiet_s = config.debounce_ms / 1000
        pending: dict[str, list[float]] = {}  # path -> [first, last] time a change to it was seen
        last_sync: float | None = None
        try:
            for raw in changes:  # the first batch arrives once the OS watch is set up: then scan
                now = time.monotonic()
                for change, path in raw:  # filtered here: watchfiles yields no batch it filtered out whole,
                    if self._wanted(change, path):  # and then nothing due would be announced
                        pending.setdefault(path, [now, now])[1] = now
                if last_sync is None or (self._resync_s and now - last_sync >= self._resync_s):
                    self.sync(initial=last_sync is None)
                    last_sync = now
                due = [p for p, (first, last) in pending.items()
                       if now - last >= quiet_s or now - first >= MAX_WAIT_DEBOUNCES * quiet_s]
                for path in due:
                    del pending[path]
                if due:
                    self.apply(due)  # on an error the next start rescans, so pending paths are not lost
        finally:
            changes.close()

    def _wanted(self, change: watchfiles.Change, path: str) -> bool:
        """Drop excluded paths and files not included; keep dirs and deletions."""
        rel = self._relative(path)
        if rel is None:
            return True
        if self.config.excludes(rel) or (not self.config.recursive and "/" in rel) or self._first_link(rel) not in (
                None, rel):  # under a symlink: only the link's own changes matter (see apply)
            return False
        if change == watchfiles.Change.deleted:
            return True
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                return True
        except OSError:
            return True
        return self.config.selects(rel)

    # -- state ---------------------------------------------------------------------------------------

    def sync(self, *, initial: bool = False) -> int:
        """Compare the whole directory with the recorded state and announce the difference."""
        self._check_root()
        changes, forget = self._reconcile("")
        self._commit(changes, forget)
        if initial:
            counts = {k: sum(c.kind == k for c in changes) for k in ("added", "modified", "deleted")}
            log.info("watch %s: watching %s; since the last run: %d added, %d modified, %d deleted",
                     self.config.name, self.config.path, counts["added"], counts["modified"], counts["deleted"])
        self._ride.ok(self._redis)  # a good scan ends an outage: the backoff starts over
        self.synced.set()
        return len(changes)

    def apply(self, paths: Iterable[str]) -> None:
        """Announce what changed at the notified (absolute) paths."""
        config = self.config
        files: set[str] = set()
        folders: set[str] = set()
        for path in paths:
            rel = self._relative(path)
            if rel is None:
                self._check_root()
                continue
            if (link := self._first_link(rel)) is not None:  # files recorded under it are gone: forget them
                folders.add(link)
                continue
            try:
                is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
            except OSError:
                is_dir = False
            (folders if is_dir else files).add(rel)
        names = sorted(files)
        values = self._redis.hmget(self._key, names) if names else []
        stored = {n: v.decode() for n, v in zip(names, values, strict=True) if v is not None}
        current = {n: sig for n in names if (sig := self._signature(n)) is not None}
        by_path = {c.path: c for c in diff_states(stored, current)}
        if config.recursive:  # a vanished path that was not a known file may have been a directory
            folders |= {n for n in names if n not in stored and n not in current and not os.path.lexists(
                config.path / n)}
        forget: list[str] = []
        for prefix in _outermost(folders):
            changes, stale = self._reconcile(prefix)
            by_path.update((c.path, c) for c in changes)
            forget.extend(stale)
        self._commit([by_path[p] for p in sorted(by_path)], forget)

    def _reconcile(self, prefix: str) -> tuple[list[FileChange], list[str]]:
        """Changes at or under `prefix`, and recorded paths the watch no longer selects (to forget quietly)."""
        if prefix:
            match = _REDIS_GLOB.sub(r"\\\1", prefix) + "/*"
            raw = dict(self._redis.hscan_iter(self._key, match=match, count=1000))
        else:
            raw = self._redis.hgetall(self._key)
        stored = {k.decode(): v.decode() for k, v in raw.items()}
        stale = [p for p in stored if not self.config.selects(p)]
        kept = {p: v for p, v in stored.items() if self.config.selects(p)}
        return diff_states(kept, scan(self.config, prefix)), stale

    def _commit(self, changes: Sequence[FileChange], forget: Sequence[str] = ()) -> None:
        """Publish the events first, then record the new state (a crash in between re-announces; ids dedup)."""
        if forget:
            self._redis.hdel(self._key, *forget)
        for start in range(0, len(changes), COMMIT_CHUNK):
            chunk = changes[start:start + COMMIT_CHUNK]
            now = datetime.now(UTC)
            published = self._publisher.publish([change_event(self.config, c, now=now) for c in chunk])
            pipe = self._redis.pipeline(transaction=True)
            for change in chunk:
                if change.new is None:
                    pipe.hdel(self._key, change.path)
                else:
                    pipe.hset(self._key, change.path, change.new)
            pipe.execute()
            self._log(chunk, published)

    def _log(self, chunk: Sequence[FileChange], published: Sequence[Published]) -> None:
        prefix = self.config.type_prefix
        for change, outcome in list(zip(chunk, published, strict=True))[:_LOGGED_PER_BATCH]:
            size = f" ({change.new.partition(':')[0]} bytes)" if change.new else ""
            seen = " (already published by another watcher or before a restart)" if outcome.duplicate else ""
            log.info("watch %s: %s.%s %s%s%s", self.config.name, prefix, change.kind, change.path, size, seen)
        if len(chunk) > _LOGGED_PER_BATCH:
            log.info("watch %s: ... and %d more change(s)", self.config.name, len(chunk) - _LOGGED_PER_BATCH)

    def _check_root(self) -> None:  # the confinement validation checked, again (the run loop waits)
        if (problem := self.config.root_problem()) is not None:
            raise WatchRootGoneError(problem)

    def _first_link(self, rel: str) -> str | None:  # None if no symlink leads to `rel`, else the first one
        if os.path.realpath(path := os.path.join(self.config.path, rel)) == path:
            return None
        parts = rel.split("/")
        return next(("/".join(parts[:i]) for i in range(1, len(parts) + 1)
                     if os.path.islink(os.path.join(self.config.path, *parts[:i]))), rel)

    def _signature(self, rel: str) -> str | None:
        if not self.config.selects(rel) or not acceptable(rel) or self._first_link(rel) is not None:
            return None
        try:
            st = os.lstat(self.config.path / rel)
        except OSError:
            return None
        return signature(st) if stat.S_ISREG(st.st_mode) else None

    def _relative(self, path: str) -> str | None:
        try:
            rel = Path(path).relative_to(self.config.path).as_posix()
        except ValueError:
            return None
        return None if rel == "." else rel


def _outermost(folders: Iterable[str]) -> list[str]:  # the folders not inside another of them
    out: list[str] = []
    for folder in sorted(folders):
        if not any(folder.startswith(f"{kept}/") for kept in out):
            out.append(folder)
    return out


class FileWatcher:
    """Runs a project's file watches: `FileWatcher(client, settings, project.watches.values()).run(stop)`.

    `tick_ms` is how often a watch wakes up without notifications (to announce files whose debounce
    window ended; it also bounds how long the first scan waits for the OS watch to be set up, and how
    long watchfiles groups notifications); `resync_s` is the period of full rescans (None: only at
    start); `max_backoff_s` caps the wait between retries when Redis or the directory is unavailable.
    """

    def __init__(self, client: redis.Redis, settings: Settings, watches: Iterable[WatchConfig], *,
                 tick_ms: int = 100, resync_s: float | None = 300.0, max_backoff_s: float = 30.0) -> None:
        keys = Keys(settings.key_prefix)
        self._watches = [_Watch(w, client, keys, settings, tick_ms=tick_ms, resync_s=resync_s,
                                max_backoff_s=max_backoff_s) for w in watches if w.enabled]

    @property
    def names(self) -> list[str]:
        """The enabled watches."""
        return [w.config.name for w in self._watches]

    def ready(self) -> bool:
        """Whether every watch has caught up with its directory at least once (and is watching)."""
        return all(w.synced.is_set() for w in self._watches)

    def sync(self) -> int:
        """Catch up once, without watching: announce what changed since the recorded state; returns how many."""
        return sum(w.sync() for w in self._watches)

    def run(self, stop: threading.Event) -> None:
        """Watch every enabled watch (a thread each) until `stop` is set; returns at once if there is none."""
        if not self._watches:
            log.info("no file watches enabled")
            return
        threads = [threading.Thread(target=w.run, args=(stop,), name=f"watch-{w.config.name}", daemon=True)
                   for w in self._watches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
