"""③ Planning an event: a tick that queue-one held goes back to the one rule it was held for."""

from __future__ import annotations

from pathlib import Path

from orchestrator.cli.wiring import load_project
from orchestrator.engine.plan import HELD_FOR, plan_event
from orchestrator.events.envelope import event_from_mapping
from orchestrator.jsonutil import dumps, loads

from ..projects import make_project


def test_a_held_tick_is_planned_for_its_rule_only(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path, rules="""\
        schedules:
          - {name: tick, cron: "* * * * *", overlap: queue-one}
        rules:
          - {name: a, type: schedule.fired, source: /schedules/tick, workflow: flow}
          - {name: b, type: schedule.fired, source: /schedules/tick, workflow: flow}
        """, workflows={"flows": """\
        from orchestrator import task, workflow

        @task
        def step() -> None:
            return None

        @workflow
        def flow():
            step()
        """}))
    body = {"specversion": "1.0", "id": "tick@1", "source": "/schedules/tick", "type": "schedule.fired"}

    requests, _ = plan_event(project, event_from_mapping(body), dumps(body))
    assert [r.rule for r in requests] == ["a", "b"]
    held = {r.rule: loads(r.raw or b"{}")[HELD_FOR] for r in requests}
    assert held == {"a": "a", "b": "b"}

    again, _ = plan_event(project, event_from_mapping({**body, HELD_FOR: "b"}))
    assert [r.rule for r in again] == ["b"]


def test_a_cut_request_keeps_the_events_trace_like_the_others(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path, rules="""\
        rules:
          - {name: a, type: thing.happened, workflow: flow}
        """, workflows={"flows": """\
        from orchestrator import task, workflow

        @task
        def step() -> None:
            return None

        @workflow
        def flow():
            step()
        """}))
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    event = event_from_mapping({"specversion": "1.0", "id": "e1", "source": "/t", "type": "thing.happened",
                                "traceparent": traceparent})

    (cut,), _ = plan_event(project, event, depth=5, max_depth=3)
    (normal,), _ = plan_event(project, event, depth=0, max_depth=3)

    assert cut.cut and normal.trace is not None
    assert cut.trace == normal.trace, "the cut record's trace is the event's"
