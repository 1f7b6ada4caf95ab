"""What a project's rule and workflow files look like on disk, to tell cheaply whether they changed."""

from __future__ import annotations

from pathlib import Path

from .errors import hidden
from .project import RULES_DIR, WORKFLOWS_DIR

__all__ = ["Fingerprint", "fingerprint"]

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(root: Path) -> Fingerprint:
    """(path, size, mtime ns) of every rule and workflow file of the project at `root`: a few stat calls."""
    found = []
    for folder in (root / RULES_DIR, root / WORKFLOWS_DIR):
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if path.suffix in (".yaml", ".yml", ".py") and path.is_file() and not hidden(path, folder):
                stat = path.stat()
                found.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(found))
