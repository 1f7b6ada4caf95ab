"""⑧ The sweeper's decisions: attempts of dead workers and attempts whose job vanished. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator import task, workflow
from orchestrator.engine.sweeper import lost_attempts, stalled_attempts
from orchestrator.workflows.lifecycle import new_run
from orchestrator.workflows.runs import EventRef

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@task
def step(x: int) -> int:
    return x


@workflow
def two(x: int) -> None:
    step.with_options(name="a")(x)
    step.with_options(name="b")(x)


def test_attempts_of_workers_without_a_heartbeat_fail_as_worker_lost() -> None:
    inflight = {"r\x1fa\x1f1": "w1", "r\x1fb\x1f2": "w2"}
    records = lost_attempts(inflight, {"w1"}, NOW, 10)
    assert [(r.run, r.node, r.attempt, r.worker, r.error_type) for r in records] == [("r", "b", 2, "w2", "WorkerLost")]
    assert "stopped sending heartbeats" in (records[0].error or "") and records[0].retryable is None


def test_attempts_queued_too_long_whose_job_vanished_fail_as_job_lost() -> None:
    run = new_run("r", two.spec, "rule", EventRef("e", "/s", "t"), {"x": 1}, NOW - timedelta(seconds=600)).run
    asked: list[list[str]] = []

    def missing(jobs: list[str]) -> set[str]:
        asked.append(sorted(jobs))
        return {"r-a-1"}

    records = stalled_attempts([run], NOW, 300, {}, missing)
    assert asked == [["r-a-1", "r-b-1"]]
    assert [(r.node, r.error_type) for r in records] == [("a", "JobLost")]
    assert stalled_attempts([run], NOW - timedelta(seconds=400), 300, {}, missing) == []  # not stalled yet
    assert stalled_attempts([run], NOW, 300, {"r\x1fa\x1f1": "w", "r\x1fb\x1f1": "w"}, missing) == []  # running
