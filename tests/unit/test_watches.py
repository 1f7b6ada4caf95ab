"""File watches: where a watch may point (checked through `load_project`, with file, line and field),
which files its globs select, ORCH_WATCH_ROOTS, and the pure parts of the watcher (diff, event ids)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.cli.wiring import load_project
from orchestrator.errors import ConfigError, ConfigIssue
from orchestrator.settings import Settings
from triggers.files.changes import FileChange, change_event, diff_states, event_id
from triggers.files.config import WatchConfig

from ..projects import make_project


def watch_yaml(path: str, extra: str = "") -> str:
    # line 1: watches:, line 2: - name, line 3: path
    return f"watches:\n  - name: inbox\n    path: {path}\n{extra}"


def only_issue(root: Path, watch_roots: tuple[Path, ...] = ()) -> ConfigIssue:
    with pytest.raises(ConfigError) as caught:
        load_project(root, watch_roots=watch_roots, check_watch_paths=True)
    (issue,) = caught.value.issues
    return issue


def error_type(path: str, root: Path, roots: tuple[Path, ...] = ()) -> str:
    with pytest.raises(ValidationError) as caught:
        WatchConfig.model_validate({"name": "inbox", "path": path},
                                   context={"project_root": root, "watch_roots": (root, *roots)})
    return str(caught.value.errors()[0]["type"])


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A project with an `inbox/` directory and a `notes.txt` file, beside a directory `outside/`."""
    root = make_project(tmp_path / "project")
    (root / "inbox").mkdir()
    (root / "notes.txt").write_text("not a directory\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    return root, outside


# -- where a watch may point ----------------------------------------------------------------------


def test_a_watch_inside_the_project_loads_with_its_defaults(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "rules" / "rules.yaml").write_text(watch_yaml("inbox"))

    watch = load_project(root, check_watch_paths=True).watches["inbox"]

    assert watch.path == (root / "inbox").resolve()
    assert (watch.recursive, watch.debounce_ms, watch.enabled, watch.include, watch.exclude) == (
        True, 500, True, (), ())
    assert watch.event_source == "/watches/inbox" and watch.type_prefix == "file"


@pytest.mark.parametrize(("path", "kind", "says"), [
    ("../outside", "watch_path_escapes", "leaves the allowed directories through '..'"),
    ("link", "watch_path_symlink_outside", "goes through a symlink to"),
    ("notes.txt", "watch_path_not_directory", "is not a directory"),
    ("missing", "watch_path_missing", "does not exist"),
    ("OUTSIDE", "watch_path_outside_roots", "is outside the allowed directories"),
])
def test_a_path_the_watch_may_not_use_is_rejected_with_its_named_error(
        layout: tuple[Path, Path], path: str, kind: str, says: str) -> None:
    root, outside = layout
    (root / "link").symlink_to(outside)
    path = path.replace("OUTSIDE", str(outside))
    (root / "rules" / "rules.yaml").write_text(watch_yaml(path))

    issue = only_issue(root)

    assert (issue.file, issue.line, issue.field) == (root / "rules" / "rules.yaml", 3, "watches[0].path")
    assert says in issue.message
    assert error_type(path, root) == kind


@pytest.mark.parametrize("path", ["../outside", "link"])
def test_leaving_the_project_says_to_add_the_directory_to_orch_watch_roots(
        layout: tuple[Path, Path], path: str) -> None:
    root, outside = layout
    (root / "link").symlink_to(outside)
    (root / "rules" / "rules.yaml").write_text(watch_yaml(path))

    message = only_issue(root).message

    assert "ORCH_WATCH_ROOTS" in message and str(outside) in message


def test_a_missing_directory_says_how_to_create_it(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "rules" / "rules.yaml").write_text(watch_yaml("drop/box"))

    assert f"mkdir -p {root / 'drop' / 'box'}" in only_issue(root).message


@pytest.mark.parametrize("path", ["../outside", "OUTSIDE", "link", "link/sub"])
def test_an_extra_watch_root_allows_a_directory_outside_the_project(
        layout: tuple[Path, Path], path: str) -> None:
    root, outside = layout
    (outside / "sub").mkdir()
    (root / "link").symlink_to(outside)
    (root / "rules" / "rules.yaml").write_text(watch_yaml(path.replace("OUTSIDE", str(outside))))

    watch = load_project(root, watch_roots=(outside,), check_watch_paths=True).watches["inbox"]

    assert watch.path == (outside / "sub" if path.endswith("sub") else outside).resolve()


def test_a_symlink_inside_the_project_to_a_directory_inside_it_is_followed(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "alias").symlink_to(root / "inbox")
    (root / "rules" / "rules.yaml").write_text(watch_yaml("alias"))

    assert load_project(root, check_watch_paths=True).watches["inbox"].path == (root / "inbox").resolve()


def test_other_watch_fields_are_checked_too(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "rules" / "rules.yaml").write_text(watch_yaml("inbox", "    debounce: 100\n"))

    issue = only_issue(root)

    assert (issue.line, issue.field) == (4, "watches[0].debounce")
    assert issue.message.startswith("unknown field (did you mean 'debounce_ms'?)")


def test_a_glob_may_not_climb_out_of_the_watch(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "rules" / "rules.yaml").write_text(watch_yaml("inbox", "    include: ['../*.csv']\n"))

    issue = only_issue(root)

    assert (issue.line, issue.field) == (4, "watches[0].include")
    assert "must not contain '..'" in issue.message


def test_orch_watch_roots_is_a_path_list_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().watch_roots == ()
    monkeypatch.setenv("ORCH_WATCH_ROOTS", f"/srv/drop{os.pathsep}/data/in{os.pathsep}")
    assert Settings().watch_roots == (Path("/srv/drop"), Path("/data/in"))
    monkeypatch.setenv("ORCH_WATCH_ROOTS", '["/with:colon"]')
    assert Settings().watch_roots == (Path("/with:colon"),)


# -- which files a watch selects ------------------------------------------------------------------


@pytest.mark.parametrize(("include", "exclude", "path", "selected"), [
    ((), (), "a/b/c.bin", True),
    (("*.csv",), (), "report.csv", True),
    (("*.csv",), (), "deep/er/report.csv", True),
    (("*.csv",), (), "report.csv.tmp", False),
    (("reports/*.csv",), (), "reports/a.csv", True),
    (("reports/*.csv",), (), "reports/x/a.csv", False),
    (("reports/**",), (), "reports/x/a.csv", True),
    (("data-[0-9].csv",), (), "data-7.csv", True),
    (("data-[!0-9].csv",), (), "data-7.csv", False),
    ((), ("**/*.tmp",), "a.tmp", False),
    ((), ("**/*.tmp",), "x/y/a.tmp", False),
    ((), ("tmp",), "tmp/a.csv", False),
    ((), ("tmp/**",), "tmp/a.csv", False),
    ((), ("tmp",), "tmpx/a.csv", True),
    ((), ("**/.*",), "x/.a.csv.swp", False),
    ((), ("**/.*",), ".git/config", False),
    (("*.csv",), ("archive/**",), "archive/old.csv", False),
])
def test_include_and_exclude_globs(tmp_path: Path, include: tuple[str, ...], exclude: tuple[str, ...],
                                   path: str, selected: bool) -> None:
    watch = WatchConfig(name="w", path=tmp_path, include=include, exclude=exclude)

    assert watch.selects(path) is selected


def test_a_flat_watch_selects_top_level_files_only(tmp_path: Path) -> None:
    watch = WatchConfig(name="w", path=tmp_path, recursive=False)

    assert watch.selects("a.csv") and not watch.selects("sub/a.csv")


# -- the watcher's pure parts ---------------------------------------------------------------------


def test_the_difference_between_recorded_and_current_state() -> None:
    stored = {"same.csv": "1:10", "changed.csv": "1:10", "gone.csv": "5:50"}
    current = {"same.csv": "1:10", "changed.csv": "2:20", "new.csv": "3:30"}

    assert diff_states(stored, current) == [
        FileChange("modified", "changed.csv", "1:10", "2:20"),
        FileChange("deleted", "gone.csv", "5:50", None),
        FileChange("added", "new.csv", None, "3:30"),
    ]


def test_event_ids_depend_on_watch_path_kind_and_signature_only() -> None:
    added = FileChange("added", "a.csv", None, "3:30")

    assert event_id("inbox", added) == event_id("inbox", FileChange("added", "a.csv", None, "3:30"))
    others = [FileChange("added", "a.csv", None, "3:31"), FileChange("added", "b.csv", None, "3:30"),
              FileChange("modified", "a.csv", "1:1", "3:30")]
    assert len({event_id("inbox", added), event_id("other", added), *(event_id("inbox", c) for c in others)}) == 5


def test_the_events_carry_path_size_and_mtime(tmp_path: Path) -> None:
    watch = WatchConfig(name="inbox", path=tmp_path)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    mtime_ns = 1_700_000_000_123_456_789

    added = change_event(watch, FileChange("added", "sub/a.csv", None, f"42:{mtime_ns}"), now=now).to_dict()
    deleted = change_event(watch, FileChange("deleted", "sub/a.csv", f"42:{mtime_ns}", None), now=now).to_dict()

    assert added["type"] == "file.added" and added["source"] == "/watches/inbox" and added["subject"] == "sub/a.csv"
    assert added["data"] == {"watch": "inbox", "path": "sub/a.csv", "size": 42,
                             "mtime": "2023-11-14T22:13:20.123456Z"}
    assert added["time"] == "2023-11-14T22:13:20.123456Z"
    assert deleted["type"] == "file.deleted" and deleted["time"] == "2030-01-01T00:00:00Z"
    assert deleted["data"] == {"watch": "inbox", "path": "sub/a.csv", "size": None, "mtime": None}


# -- which roles check the paths on disk ----------------------------------------------------------


def test_a_watch_on_a_missing_directory_loads_for_the_engine_but_not_for_validate(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "rules" / "rules.yaml").write_text(watch_yaml("not-on-this-host"))

    watch = load_project(root).watches["inbox"]  # engine, worker, api: they never open the directory
    issue = only_issue(root)                     # orch validate, orch triggers

    assert watch.path == root / "not-on-this-host"
    assert (issue.line, issue.field) == (3, "watches[0].path") and "does not exist" in issue.message


@pytest.mark.parametrize(("path", "says"), [("''", "must name a directory"), ('"in\\0box"', "NUL")])
def test_without_path_checks_malformed_paths_are_still_refused(layout: tuple[Path, Path], path: str,
                                                               says: str) -> None:
    root, _ = layout
    (root / "rules" / "rules.yaml").write_text(watch_yaml(path))

    with pytest.raises(ConfigError) as caught:
        load_project(root)

    (issue,) = caught.value.issues
    assert issue.field == "watches[0].path" and says in issue.message


def test_the_watcher_re_checks_the_confinement_it_was_validated_with(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    (root / "rules" / "rules.yaml").write_text(watch_yaml("inbox"))
    watch = load_project(root, check_watch_paths=True).watches["inbox"]
    unconfined = WatchConfig(name="w", path=outside)
    assert watch.root_problem() is None and unconfined.root_problem() is None

    (root / "inbox").rmdir()
    assert "is missing" in (watch.root_problem() or "")
    (root / "inbox").symlink_to(outside)  # swapped for a symlink after validation
    assert "now goes through a symlink to" in (watch.root_problem() or "")
    (root / "inbox").unlink()
    (root / "inbox").mkdir()
    assert watch.root_problem() is None


@pytest.mark.parametrize(("source", "ok"), [("/watches/drop", True), ("/schedules/nightly", False),
                                            ("/hooks/github", False), ("/my/source", False)])
def test_a_watch_source_stays_under_watches(tmp_path: Path, source: str, ok: bool) -> None:
    values = {"name": "w", "path": str(tmp_path), "source": source}
    if ok:
        assert WatchConfig.model_validate(values).event_source == source
        return
    with pytest.raises(ValidationError, match="must start with /watches/"):
        WatchConfig.model_validate(values)
