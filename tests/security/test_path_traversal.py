"""Paths that try to leave the project: watches and project files. `orch validate`, as a user runs it,
refuses each with the file, line and field, and nothing outside the project is read or imported."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..e2e.conftest import orch, orch_env
from ..projects import make_project


def validate(project: Path) -> tuple[int, str]:
    result = orch("validate", env=orch_env(None, project), check=False)
    return result.returncode, result.stderr


@pytest.mark.parametrize(("path", "fragment"), [
    ("../outside", "leaves the allowed directories through '..'"),
    ("inbox/../../outside", "leaves the allowed directories through '..'"),
    ("/etc", "is outside the allowed directories"),
    ("link-out", "goes through a symlink to"),
    ("inbox/../link-out", "goes through a symlink to"),
])
def test_a_watch_may_not_point_outside_the_project(tmp_path: Path, path: str, fragment: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    project = make_project(tmp_path / "project", rules=f"""\
        watches:
          - name: drop
            path: "{path}"
        """)
    (project / "inbox").mkdir()
    (project / "link-out").symlink_to(outside)

    code, errors = validate(project)

    assert code == 1 and "rules.yaml:3: watches[0].path:" in errors and fragment in errors, errors


def test_project_files_that_are_symlinks_to_elsewhere_are_neither_read_nor_imported(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = tmp_path / "imported"
    (outside / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (outside / "evil.yaml").write_text("rules: []\n")
    (outside / "flows.yaml").write_text("workflows: []\n")
    project = make_project(tmp_path / "project")
    (project / "workflows" / "evil.py").symlink_to(outside / "evil.py")
    (project / "workflows" / "flows.yaml").symlink_to(outside / "flows.yaml")
    (project / "rules" / "evil.yaml").symlink_to(outside / "evil.yaml")

    code, errors = validate(project)

    assert code == 1 and not marker.exists(), "a module outside the project was imported"
    for name in ("workflows/evil.py", "workflows/flows.yaml", "rules/evil.yaml"):
        assert f"{project / name}: is a symlink to {(outside / Path(name).name).resolve()}, outside the project" in errors


def test_a_symlink_inside_the_project_is_fine(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", workflows={"real": "from orchestrator import task\n\n@task\ndef t(): pass\n"})
    (project / "shared").mkdir()
    (project / "shared" / "more.py").write_text("from orchestrator import task\n\n@task\ndef u(): pass\n")
    (project / "workflows" / "more.py").symlink_to(project / "shared" / "more.py")

    code, errors = validate(project)

    assert code == 0, errors
