"""Helpers for the deploy/ checks: where the files are, and the linters the pyproject `test` extra installs."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def tool(name: str) -> str:
    """The path of a command-line tool installed beside this Python (the test extra), or on PATH; skip loudly
    when there is none, saying how to get it."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"SKIPPED LOUDLY: {name} is not installed, so this deploy file goes unchecked: "
                    f"`make install` installs it (pyproject `test` extra)")
    return found
