"""Upcoming firings as the catalogue shows them (orchestrator.cron.next_firings): UTC and local time, and a
note on every firing a DST change touches, across both 2026 transitions in Berlin and New York."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.cron import MAX_FIRINGS, next_firings


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def rows(cron: str, zone: str, now: datetime, n: int) -> list[tuple[str, str, str]]:
    """(utc, local, the note's first word or "") of each firing."""
    return [(f["utc"] or "", f["local"] or "", (f["dst"] or "").split(":")[0].split(" ")[0])
            for f in next_firings(cron, zone, now, n)]


def test_berlin_spring_forward_marks_the_moved_firing_and_the_offset_change() -> None:
    # 2026-03-29: 02:00 CET -> 03:00 CEST. 02:30 does not exist; 09:00 is the first at +02:00.
    assert rows("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), 2) == [
        ("2026-03-29T01:30:00Z", "2026-03-29T03:30:00+02:00", "moved"),
        ("2026-03-30T00:30:00Z", "2026-03-30T02:30:00+02:00", ""),
    ]
    assert rows("0 9 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), 2) == [
        ("2026-03-29T07:00:00Z", "2026-03-29T09:00:00+02:00", "UTC"),
        ("2026-03-30T07:00:00Z", "2026-03-30T09:00:00+02:00", ""),
    ]


def test_the_offset_note_names_both_offsets() -> None:
    (first, *_) = next_firings("0 9 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), 1)

    assert first["dst"] == "UTC offset +01:00 -> +02:00 (DST change since the previous firing)"


def test_berlin_fall_back_marks_a_fixed_hour_fired_once_and_the_next_day_offset() -> None:
    # 2026-10-25: 03:00 CEST -> 02:00 CET; 02:30 happens twice, a daily job fires at the first.
    assert rows("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), 2) == [
        ("2026-10-25T00:30:00Z", "2026-10-25T02:30:00+02:00", "02"),
        ("2026-10-26T01:30:00Z", "2026-10-26T02:30:00+01:00", "UTC"),
    ]


def test_new_york_spring_forward_moves_the_hourly_firing_in_the_gap() -> None:
    # 2026-03-08: 02:00 EST -> 03:00 EDT.
    assert rows("30 * * * *", "America/New_York", utc(2026, 3, 8, 6), 3) == [
        ("2026-03-08T06:30:00Z", "2026-03-08T01:30:00-05:00", ""),
        ("2026-03-08T07:30:00Z", "2026-03-08T03:30:00-04:00", "moved"),
        ("2026-03-08T08:30:00Z", "2026-03-08T04:30:00-04:00", ""),
    ]


def test_new_york_fall_back_marks_both_passes_of_a_repeated_hour() -> None:
    # 2026-11-01: 02:00 EDT -> 01:00 EST; an hourly schedule fires at both 01:30s.
    assert rows("30 * * * *", "America/New_York", utc(2026, 11, 1, 4), 4) == [
        ("2026-11-01T04:30:00Z", "2026-11-01T00:30:00-04:00", ""),
        ("2026-11-01T05:30:00Z", "2026-11-01T01:30:00-04:00", "repeated"),
        ("2026-11-01T06:30:00Z", "2026-11-01T01:30:00-05:00", "repeated"),
        ("2026-11-01T07:30:00Z", "2026-11-01T02:30:00-05:00", ""),
    ]


def test_a_zone_without_dst_has_no_notes_and_local_equals_utc() -> None:
    found = next_firings("0 0 * * *", "UTC", utc(2026, 3, 28, 12), 3)

    assert [f["dst"] for f in found] == [None, None, None]
    assert [f["local"] for f in found] == ["2026-03-29T00:00:00+00:00", "2026-03-30T00:00:00+00:00",
                                           "2026-03-31T00:00:00+00:00"]


def test_the_count_is_capped_and_an_expression_that_never_fires_gives_none() -> None:
    assert len(next_firings("* * * * * *", "UTC", utc(2026, 1, 1), 10**9)) == MAX_FIRINGS
    assert next_firings("0 0 30 2 *", "UTC", utc(2026, 1, 1), 5) == []
    assert next_firings("0 0 * * *", "UTC", utc(2026, 1, 1), 0) == []


@pytest.mark.parametrize(("cron", "zone"), [("not cron", "UTC"), ("61 * * * *", "UTC"), ("* * * * *", "Mars/Base"),
                                            ("* * * * *", "../../etc/passwd"), ("* * * * *", "")])
def test_what_cannot_be_read_is_a_value_error(cron: str, zone: str) -> None:
    with pytest.raises(ValueError):
        next_firings(cron, zone, utc(2026, 1, 1), 3)


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_firings("* * * * *", "UTC", datetime(2026, 1, 1), 3)
