"""The worker and queue gauges' arithmetic: busy ratio, capacity per queue, load. Pure."""

from __future__ import annotations

from orchestrator.metrics_gauges import WorkerBeat, queue_load, summarize


def test_busy_ratio_is_busy_over_live_workers_and_zero_without_any() -> None:
    fleet = summarize([WorkerBeat("busy", True, ("default",)), WorkerBeat("idle", False, ("default",)),
                       WorkerBeat("idle", False, ("default",)), WorkerBeat("stopping", True, ("default",))])
    assert fleet.busy_ratio == 0.5
    assert fleet.by_state == {"idle": 2, "busy": 1, "stopping": 1}
    assert summarize([]).busy_ratio == 0.0
    assert summarize([]).by_state == {"idle": 0, "busy": 0, "stopping": 0}


def test_capacity_counts_each_worker_once_per_queue_it_listens_on_unless_it_is_stopping() -> None:
    fleet = summarize([WorkerBeat("idle", False, ("default", "slow")), WorkerBeat("busy", True, ("default",)),
                       WorkerBeat("idle", False, ("slow", "slow")), WorkerBeat("stopping", False, ("default",))])
    assert fleet.capacity == {"default": 2, "slow": 2}


def test_a_state_read_back_from_redis_that_orch_does_not_write_is_counted_as_other() -> None:
    fleet = summarize([WorkerBeat("<script>", False, ("default",))])
    assert fleet.by_state["other"] == 1
    assert set(fleet.by_state) == {"idle", "busy", "stopping", "other"}


def test_load_is_work_per_worker_and_with_no_worker_the_work_itself() -> None:
    assert queue_load(queued=6, running=2, capacity=4) == 2.0
    assert queue_load(queued=0, running=1, capacity=4) == 0.25
    assert queue_load(queued=5, running=0, capacity=0) == 5.0  # scale up from zero
    assert queue_load(queued=0, running=0, capacity=0) == 0.0  # nothing to do: stay at zero
