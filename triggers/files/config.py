"""File watches declared in a project's YAML (`watches:`): the configuration model and path selection.

```yaml
watches:
  - name: inbox                 # unique; the events' source is /watches/inbox
    path: inbox                 # relative to the project directory, or absolute
    include: ["*.csv"]          # optional; default: every file
    exclude: ["**/.*", "tmp/**"]
    recursive: true             # default
    debounce_ms: 500            # default; a file is announced once it was left alone this long
```

The directory must resolve inside an allowed root: the project directory, or one of `ORCH_WATCH_ROOTS`.
Validation (with `context={"project_root": Path, "watch_roots": (Path, ...)}`) rejects, each with its own
pydantic error type: a path leaving the project through `..` (`watch_path_escapes`), an absolute path
elsewhere (`watch_path_outside_roots`), a symlink leading outside (`watch_path_symlink_outside`), a path
that does not exist (`watch_path_missing`) and a file (`watch_path_not_directory`). The validated `path`
is the directory's real, absolute path. A WatchConfig built in Python without that context resolves
relative paths against the current directory and confines nothing (the roots are the project loader's
policy for YAML). With `"check_watch_paths": False` in the context (every role but `orch triggers` and
`orch validate`: the directory need not exist on their host) only malformed paths are refused; the
watcher re-checks the same confinement (`WatchConfig.root_problem`) before every scan, so a directory
swapped for a symlink after validation is not followed. The watcher itself is watcher.py.

Globs: `*` and `?` stay inside one path component, `**` spans directories (`**/*.tmp` matches `a.tmp`
and `x/y/a.tmp`), `[abc]` is a character class. A pattern without `/` is matched against the name of
the file; one with `/` against its path relative to the watched directory. `include` selects files
(default: all); `exclude` drops a file when it matches the file or any directory above it
(`tmp` or `tmp/**` drops everything under `tmp/`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator.catalog.model import WatchEntry
from orchestrator.events.sources import WATCHES, own_source_problem
from orchestrator.project import Section

__all__ = ["SECTION", "WATCH_PATH_ERRORS", "WatchConfig", "check_watch_path", "compile_glob"]

WATCH_PATH_ERRORS = (
    "watch_path_escapes",
    "watch_path_outside_roots",
    "watch_path_symlink_outside",
    "watch_path_missing",
    "watch_path_not_directory",
)
_HOW_TO_ALLOW = "watch a directory inside the project, or add the directory to ORCH_WATCH_ROOTS"


def compile_glob(pattern: str) -> re.Pattern[str]:
    """The regular expression of one include/exclude glob (see the module docstring)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1:end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            out.append(f"[{'^' if negate else ''}{re.escape(body).replace(chr(92) + '-', '-')}]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


class _Glob:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.anchored = "/" in pattern
        self.regex = compile_glob(pattern)

    def matches(self, rel: str) -> bool:
        return bool(self.regex.match(rel if self.anchored else rel.rpartition("/")[2]))


class WatchConfig(BaseModel):
    """One watched directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100)
    path: Path
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    recursive: bool = True
    debounce_ms: int = Field(default=500, ge=1, le=60_000)
    poll_ms: int | None = Field(default=None, ge=10, le=60_000,
                                description="Poll every N ms instead of OS notifications (network mounts).")
    enabled: bool = True
    source: str | None = Field(default=None, min_length=1, max_length=1024, pattern=r"^[^\x00-\x1f\x7f]+$",
                               description="The events' source, under /watches/; default /watches/<name>.")
    type_prefix: str = Field(default="file", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
                             description="Event types are <type_prefix>.added / .modified / .deleted.")

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("include", "exclude")
    @classmethod
    def _check_globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = []
        for pattern in value:
            text = pattern.strip().strip("/")
            if not text:
                raise ValueError("a glob must not be empty")
            if ".." in PurePosixPath(text).parts:
                raise ValueError(f"glob {pattern!r} must not contain '..': globs match paths inside the watch")
            cleaned.append(text)
        return tuple(cleaned)

    _roots: tuple[Path, ...] | None = PrivateAttr(default=None)  # the real roots `path` was confined to

    @field_validator("path", mode="before")
    @classmethod
    def _inside_roots(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str | os.PathLike):
            return value  # pydantic says what a path must be
        text = str(value)
        if not text.strip():
            raise ValueError("must name a directory")
        if "\x00" in text:
            raise ValueError("must not contain a NUL character")
        context = info.context or {}
        project_root = Path(context.get("project_root") or Path.cwd())
        if not context.get("check_watch_paths", True):  # checked by `orch triggers` / `orch validate` only
            return Path(os.path.realpath(_absolute(Path(value), project_root)))
        return check_watch_path(Path(value), project_root, _roots_of(context))

    @field_validator("source")
    @classmethod
    def _own_prefix(cls, value: str | None) -> str | None:
        if value is not None and (problem := own_source_problem(value, WATCHES)):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _remember_roots(self, info: ValidationInfo) -> WatchConfig:
        roots = _roots_of(info.context or {})
        self._roots = None if roots is None else tuple(Path(os.path.realpath(Path(r).expanduser())) for r in roots)
        return self

    def root_problem(self) -> str | None:
        """Why the directory cannot be watched now, or None: it is missing, has become (or goes through) a
        symlink since validation, or is outside the roots it was validated against."""
        path = self.path
        if not path.is_dir():
            return f"directory {path} is missing (not announcing its files as deleted)"
        real = Path(os.path.realpath(path))
        if real != path:
            return f"{path} now goes through a symlink to {real}: not watching it (watch the real directory)"
        if self._roots is not None and not _under(real, self._roots):
            return f"{path} is outside the allowed directories ({', '.join(map(str, self._roots))})"
        return None

    @property
    def event_source(self) -> str:
        return self.source or f"/watches/{self.name}"

    def catalog_entry(self) -> WatchEntry:
        """What the project catalogue shows of this watch (orchestrator/catalog)."""
        return WatchEntry(name=self.name, directory=str(self.path), include=list(self.include),
                          exclude=list(self.exclude), recursive=self.recursive,
                          events=[f"{self.type_prefix}.{kind}" for kind in ("added", "modified", "deleted")],
                          source=self.event_source, enabled=self.enabled)

    @cached_property
    def _include(self) -> tuple[_Glob, ...]:
        return tuple(_Glob(p) for p in self.include)

    @cached_property
    def _exclude(self) -> tuple[_Glob, ...]:
        return tuple(_Glob(p) for p in self.exclude)

    def excludes(self, rel: str) -> bool:
        """Whether `rel` (a posix path relative to the watched directory) or a directory above it is excluded."""
        parts = rel.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(glob.matches(p) for glob in self._exclude for p in prefixes)

    def selects(self, rel: str) -> bool:
        """Whether the file at `rel` is watched: inside the depth limit, included and not excluded."""
        if not rel or (not self.recursive and "/" in rel):
            return False
        if self._include and not any(glob.matches(rel) for glob in self._include):
            return False
        return not self.excludes(rel)


def _roots_of(context: dict[str, Any]) -> Sequence[Path] | None:
    """The roots a validation context allows (None: confine nothing, for configs built in Python)."""
    project_root = Path(context.get("project_root") or Path.cwd())
    roots: Sequence[Path] | None = context.get("watch_roots", (project_root,) if context else None)
    return roots


def _absolute(given: Path, project_root: Path) -> Path:
    absolute = given.expanduser()
    return Path(os.path.normpath(absolute if absolute.is_absolute() else project_root / absolute))


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)  # no context: braces in paths are never placeholders


def check_watch_path(given: Path, project_root: Path, roots: Sequence[Path] | None) -> Path:
    """The real, absolute directory `given` names, or a PydanticCustomError saying why it cannot be watched.

    `roots=None` (a WatchConfig built in Python, without a validation context) confines nothing.
    """
    lexical = _absolute(given, project_root)
    if roots is None:
        roots = [Path(lexical.anchor)]
    real_roots = [Path(os.path.realpath(Path(r).expanduser())) for r in roots]
    allowed = [Path(os.path.normpath(Path(r).expanduser())) for r in roots] + real_roots
    shown = ", ".join(str(r) for r in dict.fromkeys(real_roots))
    if not _under(lexical, allowed):
        if ".." in given.parts:
            raise _error("watch_path_escapes", f"path {str(given)!r} leaves the allowed directories through '..' "
                         f"(it is {lexical}, outside {shown}): {_HOW_TO_ALLOW}")
        raise _error("watch_path_outside_roots",
                     f"path {str(given)!r} is outside the allowed directories ({shown}): {_HOW_TO_ALLOW}")
    if not lexical.exists():
        dangling = " (a symlink to nothing)" if os.path.lexists(lexical) else ""
        raise _error("watch_path_missing",
                     f"directory {lexical} does not exist{dangling}: create it (mkdir -p {lexical}) or fix the path")
    real = Path(os.path.realpath(lexical))
    if not _under(real, real_roots):
        raise _error("watch_path_symlink_outside",
                     f"path {str(given)!r} goes through a symlink to {real}, outside the allowed directories "
                     f"({shown}): point the watch at the real directory and add it to ORCH_WATCH_ROOTS")
    if not real.is_dir():
        raise _error("watch_path_not_directory",
                     f"{real} is not a directory: watch the directory that holds it and select the file with "
                     f"include: [{real.name!r}]")
    return real


SECTION = Section("watches", WatchConfig)
