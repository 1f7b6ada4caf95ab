"""runs.task_json writes a fan-out's fresh items from a template: it must give exactly the bytes of
dumps(to_dict()) for those, and fall back to them for every other task."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.jsonutil import dumps, loads
from orchestrator.workflows.runs import TaskRun, TaskState, task_json

_NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("task", "queue", "parent"), [
    ("work", "default", "work"),
    ('we"ird\\task %d %b', "q%s", "naïve ☃ parent"),
])
@pytest.mark.parametrize("index", [0, 7, 9_999])
def test_a_fresh_item_is_written_exactly_as_to_dict_would(task: str, queue: str, parent: str, index: int) -> None:
    item = TaskRun(node=f"{parent}[{index}]", task=task, queue=queue, parent=parent, index=index)
    assert task_json(item) == dumps(item.to_dict())
    assert TaskRun.from_dict(loads(task_json(item))) == item


@pytest.mark.parametrize("change", [
    {"state": TaskState.QUEUED, "queued_at": _NOW, "attempt": 1},
    {"state": TaskState.SUCCEEDED, "result": {"x": 1}, "finished_at": _NOW},
    {"error": "boom", "error_type": "ValueError"},
    {"history": [{"attempt": 1}]},
    {"retry_at": _NOW},
    {"logs": ["a"]},
    {"via": {"event": "x"}},
    {"items": 3},
    {"parent": None, "index": None},
    # read back from a run hash someone edited: not the template's %d (2.5 -> 2), nor an unhashable cache key
    {"index": 2.5},
    {"index": "3"},
    {"index": True},
    {"parent": ["work"]},
    {"queue": {"q": 1}},
])
def test_any_other_task_is_written_by_to_dict(change: dict) -> None:
    task = TaskRun(node="work[3]", task="work", queue="default", parent="work", index=3)
    for name, value in change.items():
        setattr(task, name, value)
    assert task_json(task) == dumps(task.to_dict())
