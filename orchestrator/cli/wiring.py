"""Where the core meets `triggers/`: loading a project with the trigger sections it may declare.

Every process entry point (and `orch validate`) loads projects through here, so each sees the same
sections: `schedules:`, `hooks:` and `watches:`, whose models live beside their runtimes in triggers/.
"""

from __future__ import annotations

from pathlib import Path

from ..project import Project
from ..project import load_project as _load
from ..project import load_rules as _load_rules
from ..rules.model import Rule

__all__ = ["load_project", "load_rules"]


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


def load_rules(project: Project, folder: Path | str) -> list[Rule]:
    """The rules of the YAML files under `folder`, checked against `project`'s workflows (`orch rules
    backtest --rules DIR`); the trigger sections those files may hold are accepted and ignored."""
    from triggers import SECTIONS

    return _load_rules(project, folder, sections=SECTIONS)
