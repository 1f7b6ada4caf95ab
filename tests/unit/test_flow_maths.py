"""The arithmetic of the hold-back controls (orchestrator/flow/maths.py), pure."""

from __future__ import annotations

from orchestrator.flow.maths import batch_due, debounce_due, throttle, window_admits


def run_throttle(times_ms: list[int], *, limit: int, period_ms: int, burst: int) -> list[int]:
    """Start times (ms) of events at `times_ms`, nothing released in between (pending grows once held)."""
    tat = last = None
    pending = 0
    starts = []
    for now in times_ms:
        decided = throttle(tat, last, pending, now, limit=limit, period_ms=period_ms, burst=burst)
        tat, last = decided.tat_us, decided.start_us
        pending += decided.held
        starts.append(decided.due_ms)
    return starts


def test_throttle_smooths_to_one_per_interval_after_the_burst() -> None:
    assert run_throttle([0] * 5, limit=1, period_ms=10_000, burst=2) == [0, 0, 10_000, 20_000, 30_000]
    assert run_throttle([0] * 4, limit=4, period_ms=1000, burst=1) == [0, 250, 500, 750]


def test_throttle_an_idle_key_refills_its_burst() -> None:
    decided = throttle(10_000_000, 0, 0, 30_000, limit=1, period_ms=10_000, burst=3)
    assert decided.start_us == 30_000_000 and not decided.held
    assert decided.tat_us == 40_000_000


def test_throttle_holds_an_event_due_now_while_older_ones_of_its_key_wait() -> None:
    decided = throttle(None, None, 1, 5_000, limit=10, period_ms=1000, burst=10)
    assert decided.start_us == 5_000_000 and decided.held, "order: it may not overtake the held one"


def test_throttle_never_starts_before_the_keys_last_start() -> None:
    decided = throttle(0, 9_000_000, 1, 1_000, limit=1, period_ms=1000, burst=100)
    assert decided.start_us == 9_000_000


def test_throttle_interval_is_whole_microseconds_rounded_down() -> None:
    starts = run_throttle([0, 0, 0, 0], limit=3, period_ms=1000, burst=1)
    assert starts == [0, 334, 667, 1000]  # 333333 us apart, due times rounded up to the ms


def test_window_admits_at_most_limit_in_any_period() -> None:
    assert window_admits([], 0, limit=1, period_ms=1000)
    assert not window_admits([500], 1000, limit=1, period_ms=1000)
    assert window_admits([0], 1000, limit=1, period_ms=1000), "the window is (now - period, now]"
    assert not window_admits([900, 100], 1000, limit=2, period_ms=1000)
    assert window_admits([900, 0], 1000, limit=2, period_ms=1000)


def test_debounce_due_moves_with_each_event_until_max_wait() -> None:
    assert debounce_due(0, 0, period_ms=10, max_wait_ms=0) == (10, "quiet")
    assert debounce_due(0, 15, period_ms=10, max_wait_ms=0) == (25, "quiet")
    assert debounce_due(0, 15, period_ms=10, max_wait_ms=30) == (25, "quiet")
    assert debounce_due(0, 20, period_ms=10, max_wait_ms=30) == (30, "max_wait")
    assert debounce_due(0, 25, period_ms=10, max_wait_ms=30) == (30, "max_wait")


def test_batch_due_is_its_first_event_plus_the_timeout() -> None:
    assert batch_due(1_000, timeout_ms=5_000) == 6_000
