"""② Which consumers of the engine group are dead engines (engine/takeover.py), pure."""

from __future__ import annotations

from orchestrator.engine.takeover import Consumer, dead_after_ms, dead_consumers, merge_consumers

NOW_MS = 1_000_000.0
SILENCE_MS = 15_000


def test_an_engine_whose_beat_is_older_than_the_silence_is_dead() -> None:
    consumers = [Consumer("old", 3, 15_001), Consumer("fresh", 3, 999_999)]
    beats = {"old": NOW_MS - 15_001, "fresh": NOW_MS - 14_999}
    assert dead_consumers(consumers, beats, NOW_MS, SILENCE_MS, "me") == ["old"]


def test_an_engine_that_still_reads_is_alive_whatever_its_clock_says() -> None:
    # its machine's clock runs 20 s behind: its beats look old, but Redis saw it read a moment ago
    assert dead_consumers([Consumer("behind", 3, 800)], {"behind": NOW_MS - 20_000}, NOW_MS, SILENCE_MS, "me") == []


def test_a_fresh_beat_protects_an_engine_however_long_its_entries_wait() -> None:
    assert dead_consumers([Consumer("busy", 500, 3_600_000)], {"busy": NOW_MS - 1}, NOW_MS, SILENCE_MS, "me") == []


def test_a_consumer_that_never_beat_is_judged_by_its_last_read() -> None:
    consumers = [Consumer("quiet", 1, 15_001), Consumer("reading", 1, 200)]
    assert dead_consumers(consumers, {}, NOW_MS, SILENCE_MS, "me") == ["quiet"]


def test_an_engine_is_never_dead_to_itself() -> None:
    assert dead_consumers([Consumer("me", 1, 10**9)], {"me": 0.0}, NOW_MS, SILENCE_MS, "me") == []


def test_the_silence_is_at_least_two_beats() -> None:
    assert dead_after_ms(15.0, 5.0) == 15_000
    assert dead_after_ms(1.0, 5.0) == 10_000  # a setting under the beat cannot make live engines look dead
    assert dead_after_ms(0.5, 0.2) == 500


def test_consumers_are_merged_over_streams() -> None:
    events = [{"name": b"a", "pending": 2, "idle": 900}, {"name": b"b", "pending": 0, "idle": 50}]
    results = [{"name": b"a", "pending": 1, "idle": 300}]
    merged = {c.name: c for c in merge_consumers([events, results])}
    assert merged == {"a": Consumer("a", 3, 300), "b": Consumer("b", 0, 50)}
