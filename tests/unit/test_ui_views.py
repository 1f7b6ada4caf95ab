"""What the UI pages compute from runs: the collapsed graph, the timeline, durations, and the session's
pure helpers (where signing in may lead, the CSRF token)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator import task, workflow
from orchestrator.ui.session import csrf_token, safe_next
from orchestrator.ui.views import GANTT_ROWS, duration, gantt, graph
from orchestrator.workflows.lifecycle import new_run
from orchestrator.workflows.runs import EventRef, Run, TaskRun, TaskState, item_name

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@task
def listing(n: int) -> list[int]:
    return list(range(n))


@task
def double(x: int) -> int:
    return 2 * x


@task
def total(values: list[int]) -> int:
    return sum(values)


@workflow
def fan(n: int) -> None:
    total(double.map(listing(n)))


def a_run() -> Run:
    run = new_run("r1", fan.spec, "rule", EventRef("e", "/s", "t"), {"n": 4}, NOW).run
    mapped = next(node.name for node in fan.spec.nodes if node.map_over is not None)
    run.tasks[mapped].state, run.tasks[mapped].items = TaskState.RUNNING, 4
    for i, state in enumerate([TaskState.SUCCEEDED, TaskState.SUCCEEDED, TaskState.FAILED, TaskState.RUNNING]):
        run.tasks[item_name(mapped, i)] = TaskRun(item_name(mapped, i), "double", "default", state=state,
                                                  parent=mapped, index=i)
    return run


def test_a_mapped_task_is_one_node_with_counts_by_state_drawn_in_its_worst_state() -> None:
    run = a_run()

    drawn = graph(fan.spec, run)

    by_id = {node["id"]: node for node in drawn["nodes"]}
    mapped = next(node for node in by_id.values() if node["mapped"])
    assert len(drawn["nodes"]) == 3 and mapped["item_count"] == 4
    assert mapped["counts"] == {"failed": 1, "running": 1, "succeeded": 2} and mapped["state"] == "failed"
    assert {(e["from"], e["to"]) for e in drawn["edges"]} == {(n.name, d.name) for d in fan.spec.nodes
                                                              for n in fan.spec.nodes if n.name in d.upstream}
    assert [len(level) for level in drawn["levels"]] == [1, 1, 1]


def test_the_timeline_has_a_bar_per_attempt_on_the_runs_axis() -> None:
    run = a_run()
    first = run.tasks[fan.spec.nodes[0].name]
    first.attempt, first.state = 2, TaskState.SUCCEEDED
    first.started_at, first.finished_at = NOW + timedelta(seconds=5), NOW + timedelta(seconds=10)
    first.history = [{"attempt": 1, "state": "failed", "started_at": NOW.isoformat(),
                      "finished_at": (NOW + timedelta(seconds=2)).isoformat()}]
    run.finished_at = NOW + timedelta(seconds=10)

    bars, hidden = gantt(run, NOW + timedelta(hours=1))

    assert [(b.attempt, b.state, round(b.x, 2), round(b.width, 2)) for b in bars] == [
        (1, "failed", 0.0, 0.2), (2, "succeeded", 0.5, 0.5)]
    assert hidden == 0


def test_the_timeline_is_bounded() -> None:
    run = a_run()
    for i in range(GANTT_ROWS + 10):
        run.tasks[f"x{i}"] = TaskRun(f"x{i}", "t", "q", started_at=NOW + timedelta(milliseconds=i))

    bars, hidden = gantt(run, NOW + timedelta(seconds=1))

    assert len(bars) == GANTT_ROWS and hidden == 10


@pytest.mark.parametrize(("seconds", "text"), [(None, "–"), (0.25, "250 ms"), (12.34, "12.3 s"),
                                              (245, "4 min 05 s"), (7380, "2 h 03 min")])
def test_durations_read_as_people_say_them(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(("asked", "goes"), [
    ("/ui/runs?status=failed", "/ui/runs?status=failed"), ("//evil.example/ui/", "/ui/"),
    ("https://evil.example/ui/", "/ui/"), ("/ui\\@evil.example", "/ui/"), ("/metrics", "/ui/"), (None, "/ui/"),
    ("/ui/runs/x", "/ui/runs/x")])
def test_signing_in_only_leads_inside_the_ui(asked: str | None, goes: str) -> None:
    assert safe_next(asked) == goes


def test_the_csrf_token_is_bound_to_the_session_token() -> None:
    assert csrf_token("a") == csrf_token("a") != csrf_token("b") and len(csrf_token("a")) == 64


def test_every_template_compiles_and_autoescapes() -> None:
    from orchestrator.ui.web import templates

    names = templates.env.list_templates()
    for name in names:
        templates.env.get_template(name)
    assert len(names) >= 20 and templates.env.autoescape("x.html") is True
