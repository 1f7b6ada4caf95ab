"""Small automation projects written into a temporary directory for a test."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from .helpers import EXAMPLES


def make_project(root: Path, *, rules: str = "", workflows: dict[str, str] | None = None) -> Path:
    """A project at `root` with `rules/rules.yaml` and `workflows/<name>.py` files (dedented)."""
    (root / "rules").mkdir(parents=True, exist_ok=True)
    (root / "workflows").mkdir(exist_ok=True)
    if rules:
        (root / "rules" / "rules.yaml").write_text(textwrap.dedent(rules))
    for name, code in (workflows or {}).items():
        (root / "workflows" / f"{name}.py").write_text(textwrap.dedent(code))
    return root


def copy_examples(root: Path) -> Path:
    """A private copy of the bundled example project (so its .orch/ state stays in the test's directory)."""
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns(".orch", "__pycache__"))
    return root
