"""① What changed in a watched directory: its files' signatures, the differences from a recorded state, and
the events announcing them. Pure but for `scan`, which reads the directory (see watcher.py for the rest).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from orchestrator.events.envelope import Event

from .config import WatchConfig

__all__ = ["FileChange", "Kind", "acceptable", "change_event", "diff_states", "event_id", "scan", "signature"]

log = logging.getLogger(__name__)

Kind = Literal["added", "modified", "deleted"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class FileChange:
    """One file that differs from the recorded state: `old`/`new` are "size:mtime_ns" or None."""

    kind: Kind
    path: str
    old: str | None
    new: str | None


def signature(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}"


def diff_states(stored: Mapping[str, str], current: Mapping[str, str]) -> list[FileChange]:
    """What changed from `stored` to `current` (path -> signature), sorted by path."""
    out = []
    for path in sorted(stored.keys() | current.keys()):
        old, new = stored.get(path), current.get(path)
        if old == new:
            continue
        kind: Kind = "added" if old is None else "deleted" if new is None else "modified"
        out.append(FileChange(kind, path, old, new))
    return out


def event_id(watch: str, change: FileChange) -> str:
    """The id of the event announcing `change`: the same for every replica and every re-announcement."""
    sig = change.new if change.new is not None else change.old
    text = f"{watch}\x00{change.path}\x00{change.kind}\x00{sig}"
    return "file-" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def change_event(watch: WatchConfig, change: FileChange, *, now: datetime) -> Event:
    """The CloudEvent announcing `change`; its time is the file's mtime (`now` for a deletion)."""
    size: int | None = None
    mtime: str | None = None
    when = now
    if change.new is not None:
        size_text, _, mtime_ns = change.new.partition(":")
        size = int(size_text)
        when = _EPOCH + timedelta(microseconds=int(mtime_ns) // 1000)
        mtime = when.isoformat().replace("+00:00", "Z")
    data = {"watch": watch.name, "path": change.path, "size": size, "mtime": mtime}
    return Event.new(f"{watch.type_prefix}.{change.kind}", data, source=watch.event_source, subject=change.path,
                     id=event_id(watch.name, change), time=when)


def acceptable(rel: str) -> bool:
    """Whether a path can be announced: valid UTF-8, no control characters, fits the event's subject."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return len(rel) <= 1024 and not _CONTROL.search(rel)


def scan(watch: WatchConfig, prefix: str = "") -> dict[str, str]:
    """Every selected regular file at or under `prefix` ("" = the whole watch) -> its signature."""
    out: dict[str, str] = {}
    stack = [(watch.path / prefix if prefix else watch.path, prefix)]
    if prefix and os.path.realpath(stack[0][0]) != str(stack[0][0]):
        return out  # through a symlink: nothing there is watched
    while stack:
        folder, rel_folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as exc:
            log.warning("watch %s: cannot read %s: %s", watch.name, folder, exc)
            continue
        for entry in entries:
            rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if watch.recursive and not watch.excludes(rel):
                        stack.append((Path(entry.path), rel))
                elif entry.is_file(follow_symlinks=False) and watch.selects(rel) and acceptable(rel):
                    out[rel] = signature(entry.stat(follow_symlinks=False))
            except FileNotFoundError:
                continue  # removed while we looked: the notification for it follows
    return out
