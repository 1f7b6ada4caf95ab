"""MetricsBatch.observe: a value lands in the first bucket whose bound it does not exceed, as Prometheus counts."""

from __future__ import annotations

import math
from typing import Any

import pytest

from orchestrator.metrics import BUCKET_SEP, TASK_DURATION, MetricsBatch
from orchestrator.state.keys import Keys


class Written:
    """What `flush` queues, as (command, key, field, amount)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, Any]] = []

    def hincrby(self, key: str, field: str, n: int) -> None:
        self.calls.append(("hincrby", key, field, n))

    def hincrbyfloat(self, key: str, field: str, value: float) -> None:
        self.calls.append(("hincrbyfloat", key, field, value))


@pytest.mark.parametrize("value", [-1.0, 0.0, 0.0001, 0.005, 0.0050001, 1.0, 2.5, 59.9, 1e9, math.inf, math.nan])
def test_a_value_counts_in_the_first_bucket_it_fits_and_in_count_and_sum(value: float) -> None:
    batch = MetricsBatch()
    batch.observe(TASK_DURATION, value, "wf", "t", "succeeded")
    written = Written()
    batch.flush(written, Keys("orch"))

    bounds = TASK_DURATION.buckets
    expected = next((i for i, bound in enumerate(bounds) if value <= bound), len(bounds))  # a scan, the definition
    key, base = Keys("orch").metric(TASK_DURATION.name), f"wf\x1ft\x1fsucceeded{BUCKET_SEP}"
    (_, _, _, total), = [c for c in written.calls if c[0] == "hincrbyfloat"]
    assert [c for c in written.calls if c[0] == "hincrby"] == [("hincrby", key, f"{base}{expected}", 1),
                                                                ("hincrby", key, f"{base}count", 1)]
    assert total == max(value, 0.0) or (math.isnan(value) and math.isnan(total))
    assert 0.005 in bounds  # so a value on a bound is tried: it counts in that bound's bucket
