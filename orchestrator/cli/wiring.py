"""Where the core meets `triggers/`: loading a project with the trigger sections it may declare.

Every process entry point (and `orch validate`) loads projects through here, so each sees the same
sections: `schedules:`, `hooks:` and `watches:`, whose models live beside their runtimes in triggers/.
"""

from __future__ import annotations

from pathlib import Path

from ..project import Project
from ..project import load_project as _load

__all__ = ["load_project"]


def load_project(root: Path | str, *, watch_roots: tuple[Path, ...] = (), check_watch_paths: bool = False) -> Project:
    """Load and check the project at `root` with every trigger section; ConfigError lists every problem.

    With `check_watch_paths` (`orch triggers`, `orch validate`), every watched directory must exist on
    this host, inside the project directory or one of `watch_roots`; other roles only need well-formed
    paths (they never open the directories).
    """
    from triggers import SECTIONS

    project_root = Path(root).expanduser().resolve()
    context = {"watch_roots": (project_root, *[Path(r) for r in watch_roots]), "check_watch_paths": check_watch_paths}
    return _load(root, sections=SECTIONS, context=context)
