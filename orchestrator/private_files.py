"""Files only their owner may read: the embedded Redis's password and address, the dev API token.

`orch dev` keeps them under the project's `.orch/` (mode 0700); each file is written with mode 0600 from
its creation (never world-readable, not even for an instant) and replaced atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["private_dir", "read_private", "write_private"]


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can enter (created if missing, tightened if it exists)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, atomically (a reader sees the old file or the new one)."""
    private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # in case the file existed with other permissions
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


def read_private(path: Path) -> str | None:
    """The text of a private file, or None when it is missing or unreadable."""
    try:
        return path.read_text().strip()
    except OSError:
        return None
