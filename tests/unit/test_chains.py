"""③ Chain depth: what an event's depth is, and that planning cuts a chain past the limit. Pure: no Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.wiring import load_project
from orchestrator.engine.plan import plan_event
from orchestrator.events.chains import declared_depth, event_depth, over_limit, run_of
from orchestrator.events.envelope import Event, event_from_mapping

from ..projects import make_project


def event(**attributes: Any) -> Event:
    return event_from_mapping({"specversion": "1.0", "id": "e", "source": "/s", "type": "t", **attributes})


@pytest.mark.parametrize(("value", "depth"), [
    (3, 3), (0, 0), ("7", 7), (2**31 - 1, 2**31 - 1),
    (-1, None), (True, None), ("x", None), ("-2", None), ("99999999999", None), (None, None),
])
def test_a_declared_depth_is_a_whole_number_or_ignored(value: Any, depth: int | None) -> None:
    found = event(**({"orchdepth": value} if value is not None else {}))
    assert declared_depth(found) == depth


def test_an_event_from_outside_is_depth_zero() -> None:
    assert event_depth(event(), {}) == 0


def test_an_event_a_task_emitted_is_one_deeper_than_its_run() -> None:
    emitted = event(orchrun="r1", orchtask="step")
    assert run_of(emitted) == "r1"
    assert event_depth(emitted, {"r1": 4}) == 5
    assert event_depth(emitted, {}) == 1, "a run that is gone counts as depth 0"


def test_a_declared_depth_wins_over_the_emitting_run() -> None:
    emitted = event(orchrun="r1", orchdepth=9)
    assert run_of(emitted) is None, "no lookup needed"
    assert event_depth(emitted, {"r1": 0}) == 9


def test_the_limit_is_inclusive() -> None:
    assert over_limit(10, 10) is None
    assert over_limit(11, 10) == "chain depth 11 over limit 10"


def test_planning_past_the_limit_asks_for_records_of_runs_not_started(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path, rules="""\
        rules:
          - {name: again, type: orch.run.succeeded, workflow: flow, params: {n: "{{ data.nope.deeper }}"}}
          - {name: other, type: orch.run.succeeded, source: /elsewhere, workflow: flow}
        """, workflows={"chain_flows": """\
        from orchestrator import task, workflow

        @task
        def chained(n: int = 0) -> int:
            return n

        @workflow
        def flow(n: int = 0):
            chained(n)
        """}))
    succeeded = event(type="orch.run.succeeded", source="/runs/flow", orchdepth=4)

    requests, outcomes = plan_event(project, succeeded, depth=4, max_depth=3)

    (request,) = requests
    assert request.cut and request.depth == 4 and request.params is None
    assert request.error == "rule again: chain depth 4 over limit 3", "cut before rendering (which would fail)"
    assert [(r.rule, label) for r, label in outcomes] == [("again", "matched"), ("other", "not_matched")]

    (within,) = plan_event(project, succeeded, depth=3, max_depth=3)[0]
    assert not within.cut and within.depth == 3 and "has no attribute 'nope'" in (within.error or "")
