"""⑧ The sweeper's decisions: attempts of dead workers and attempts whose job vanished. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator import task, workflow
from orchestrator.engine.sweeper import Suspects, lost_attempts, stalled_attempts
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


def test_a_lost_attempt_is_only_a_suspect_until_the_results_written_before_are_applied() -> None:
    suspects = Suspects()
    lost = lost_attempts({"r\x1fa\x1f1": "w1", "r\x1fb\x1f1": "w1"}, set(), NOW, 10)
    suspects.note(lost, "5-0", now_s=100.0)
    inflight = {"r\x1fa\x1f1": "w1", "r\x1fb\x1f1": "w1"}
    assert suspects.due(inflight, lambda h: False, now_s=101.0, patience_s=300) == []
    suspects.note(lost, "9-0", now_s=102.0)  # seen again later: still judged by the first horizon
    del inflight["r\x1fa\x1f1"]  # its result (written before the worker left) was applied: not lost
    due = suspects.due(inflight, lambda h: h == "5-0", 103.0, 300)
    assert [(r.node, r.error_type) for r in due] == [("b", "WorkerLost")]
    assert len(suspects) == 1, "kept until its failure is committed"
    suspects.forget(due)
    assert len(suspects) == 0


def test_a_suspect_is_failed_after_the_patience_even_if_the_stream_never_settles() -> None:
    suspects = Suspects()
    suspects.note(lost_attempts({"r\x1fa\x1f1": "w1"}, set(), NOW, 10), "5-0", now_s=100.0)
    assert suspects.due({"r\x1fa\x1f1": "w1"}, lambda h: False, 399.0, patience_s=300) == []
    assert len(suspects.due({"r\x1fa\x1f1": "w1"}, lambda h: False, 400.0, patience_s=300)) == 1


def test_a_suspect_whose_attempt_moved_to_another_worker_is_dropped() -> None:
    suspects = Suspects()
    suspects.note(lost_attempts({"r\x1fa\x1f1": "w1"}, set(), NOW, 10), "5-0", now_s=100.0)
    assert suspects.due({"r\x1fa\x1f1": "w2"}, lambda h: True, 101.0, patience_s=300) == []
    assert len(suspects) == 0
