"""`orch triggers` as a user runs it: file watches through the real process, stopped and started again."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.jsonutil import loads
from orchestrator.state.keys import Keys

from ..helpers import RedisServer, wait_for
from ..projects import make_project
from .conftest import Processes, orch_env


def file_events(server: RedisServer) -> list[tuple[str, str]]:
    client = server.client()
    try:
        events = [loads(fields[b"e"]) for _, fields in client.xrange(Keys().events)]
    finally:
        client.close()
    return [(e["type"], e["data"]["path"]) for e in events if e["source"] == "/watches/drop"]


def test_changes_made_while_triggers_was_down_are_announced(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", rules="""\
        watches:
          - {name: drop, path: drop, include: ["*.txt"], debounce_ms: 100}
        """)
    drop = project / "drop"
    drop.mkdir()
    (drop / "kept.txt").write_text("one")
    (drop / "changed.txt").write_text("one")
    (drop / "removed.txt").write_text("one")
    server = RedisServer()
    procs = Processes(orch_env(server.url, project), tmp_path)
    try:
        procs.start("triggers", "triggers")
        wait_for(lambda: len(file_events(server)) == 3, 20, "the first scan to announce three files")
        (drop / "live.txt").write_text("new")
        (drop / "ignored.csv").write_text("not included")
        wait_for(lambda: ("file.added", "live.txt") in file_events(server), 20, "a live change")
        assert procs.stop("triggers") == 0

        (drop / "changed.txt").write_text("two, longer")
        os.remove(drop / "removed.txt")
        (drop / "late.txt").write_text("added while down")
        before = len(file_events(server))
        procs.start("triggers", "triggers")
        wait_for(lambda: len(file_events(server)) >= before + 3, 20, "the changes made while down")
        assert procs.stop("triggers") == 0
        events = file_events(server)
    finally:
        procs.stop_all()
        server.stop()

    assert sorted(events[before:]) == [("file.added", "late.txt"), ("file.deleted", "removed.txt"),
                                       ("file.modified", "changed.txt")]
    assert sorted(events[:3]) == [("file.added", "changed.txt"), ("file.added", "kept.txt"),
                                  ("file.added", "removed.txt")]
    assert not [e for e in events if e[1] == "ignored.csv"]
    assert len(events) == len(set(events))
