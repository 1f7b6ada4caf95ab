"""Cron schedules, pure: expressions, the DST policy (golden tests for 2026), catch-up decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.cli.wiring import load_project
from orchestrator.errors import ConfigError
from triggers.cron import CronSchedule, ScheduleConfig, decide, parse_cron

from ..projects import make_project


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(expr: str, zone: str, after: datetime, count: int) -> list[tuple[str, str, str | None]]:
    """(UTC, local wall time with offset, DST note kind) of the next `count` ticks."""
    ticks = list(CronSchedule(expr, zone).ticks(after, limit=count))
    kinds = []
    for tick in ticks:
        note = tick.note or ""
        kind = ("moved" if note.startswith("moved") else "repeated" if note.startswith("repeated")
                else "once" if "fire once" in note else None)
        kinds.append(kind)
    return [(f"{t.at:%m-%d %H:%M}Z", t.local.strftime("%m-%d %H:%M%z"), k) for t, k in zip(ticks, kinds, strict=True)]


# -- golden DST tests: Europe/Berlin and America/New_York, both 2026 transitions --------------------------


def test_berlin_spring_forward_moves_a_daily_tick_in_the_gap_by_the_gap() -> None:
    # 2026-03-29: clocks go 02:00 CET -> 03:00 CEST; 02:30 does not exist that night.
    assert fires("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), 3) == [
        ("03-29 01:30Z", "03-29 03:30+0200", "moved"),
        ("03-30 00:30Z", "03-30 02:30+0200", None),
        ("03-31 00:30Z", "03-31 02:30+0200", None),
    ]


def test_berlin_spring_forward_merges_a_moved_tick_with_the_real_one() -> None:
    assert fires("*/30 * * * *", "Europe/Berlin", utc(2026, 3, 28, 23, 45), 5) == [
        ("03-29 00:00Z", "03-29 01:00+0100", None),
        ("03-29 00:30Z", "03-29 01:30+0100", None),
        ("03-29 01:00Z", "03-29 03:00+0200", "moved"),  # 02:00 moved onto 03:00: one tick, not two
        ("03-29 01:30Z", "03-29 03:30+0200", "moved"),  # 02:30 moved onto 03:30, likewise
        ("03-29 02:00Z", "03-29 04:00+0200", None),
    ]


def test_berlin_fall_back_fires_a_fixed_hour_once() -> None:
    # 2026-10-25: clocks go 03:00 CEST -> 02:00 CET; 02:30 happens twice.
    assert fires("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), 2) == [
        ("10-25 00:30Z", "10-25 02:30+0200", "once"),
        ("10-26 01:30Z", "10-26 02:30+0100", None),
    ]


def test_berlin_fall_back_fires_an_hourly_schedule_in_both_passes() -> None:
    assert fires("*/30 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 15), 6) == [
        ("10-24 23:30Z", "10-25 01:30+0200", None),
        ("10-25 00:00Z", "10-25 02:00+0200", "repeated"),
        ("10-25 00:30Z", "10-25 02:30+0200", "repeated"),
        ("10-25 01:00Z", "10-25 02:00+0100", "repeated"),
        ("10-25 01:30Z", "10-25 02:30+0100", "repeated"),
        ("10-25 02:00Z", "10-25 03:00+0100", None),
    ]


def test_new_york_spring_forward() -> None:
    # 2026-03-08: 02:00 EST -> 03:00 EDT.
    assert fires("30 2 * * *", "America/New_York", utc(2026, 3, 7, 12), 2) == [
        ("03-08 07:30Z", "03-08 03:30-0400", "moved"),
        ("03-09 06:30Z", "03-09 02:30-0400", None),
    ]
    assert fires("0 * * * *", "America/New_York", utc(2026, 3, 8, 5, 30), 3) == [
        ("03-08 06:00Z", "03-08 01:00-0500", None),
        ("03-08 07:00Z", "03-08 03:00-0400", "moved"),  # 02:00 does not exist; merged with 03:00
        ("03-08 08:00Z", "03-08 04:00-0400", None),
    ]


def test_new_york_fall_back() -> None:
    # 2026-11-01: 02:00 EDT -> 01:00 EST; 01:xx happens twice.
    assert fires("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), 2) == [
        ("11-01 05:30Z", "11-01 01:30-0400", "once"),
        ("11-02 06:30Z", "11-02 01:30-0500", None),
    ]
    assert fires("0 * * * *", "America/New_York", utc(2026, 11, 1, 3, 30), 4) == [
        ("11-01 04:00Z", "11-01 00:00-0400", None),
        ("11-01 05:00Z", "11-01 01:00-0400", "repeated"),
        ("11-01 06:00Z", "11-01 01:00-0500", "repeated"),
        ("11-01 07:00Z", "11-01 02:00-0500", None),
    ]


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize("expr", ["* * * * *", "*/7 * * * *", "0 * * * *", "30 2 * * *", "15 1,2,3 * * *",
                                  "0 0 * * *", "*/30 * * * * *"])
def test_fire_times_strictly_increase_across_every_2026_transition(zone: str, expr: str) -> None:
    schedule = CronSchedule(expr, zone)
    for start in (utc(2026, 3, 7), utc(2026, 3, 28), utc(2026, 10, 24), utc(2026, 10, 31)):
        ticks = list(schedule.ticks(start, until=start + timedelta(days=2), limit=20_000))
        assert ticks, expr
        times = [t.at for t in ticks]
        assert all(a < b for a, b in zip(times, times[1:], strict=False)), (zone, expr, start)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert max(gaps) <= timedelta(days=1, hours=1)  # no day is ever skipped


def brute_force_next(schedule: CronSchedule, after: datetime) -> datetime:
    """The reference: every matching wall time from 4 h before `after`, mapped by the policy; the earliest."""
    wall: datetime | None = after.astimezone(schedule.zone).replace(tzinfo=None) - timedelta(hours=4)
    instants: list[datetime] = []
    while wall is not None and not (
            instants and wall > min(instants).astimezone(schedule.zone).replace(tzinfo=None) + timedelta(hours=4)):
        instants += [i for i, _ in schedule._instants(wall) if i > after]
        wall = schedule._next_wall(wall)
    return min(instants)


@settings(max_examples=150, deadline=None)
@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31)),
       st.sampled_from(["*/15 * * * *", "0 */2 * * *", "45 2 * * *", "30 1 * * *", "0,30 0-4 * * *"]),
       st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]))
def test_next_after_agrees_with_a_brute_force_reference(start: datetime, expr: str, zone: str) -> None:
    schedule = CronSchedule(expr, zone)
    after = start.replace(tzinfo=UTC)
    tick = schedule.next_after(after)
    assert tick is not None
    assert tick.at == brute_force_next(schedule, after)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
@pytest.mark.parametrize("expr", ["*/15 * * * *", "0 */2 * * *", "45 2 * * *", "30 1 * * *", "0,30 0-4 * * *"])
def test_next_after_agrees_with_the_reference_minute_by_minute_across_transitions(zone: str, expr: str) -> None:
    schedule = CronSchedule(expr, zone)
    transitions = {"Europe/Berlin": [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1)],
                   "America/New_York": [utc(2026, 3, 8, 7), utc(2026, 11, 1, 6)],
                   "Australia/Lord_Howe": [utc(2026, 4, 4, 15), utc(2026, 10, 3, 15, 30)]}[zone]
    for moment in transitions:
        for minutes in range(-240, 240, 11):
            after = moment + timedelta(minutes=minutes, seconds=13)
            assert schedule.next_after(after).at == brute_force_next(schedule, after), after  # type: ignore[union-attr]


# -- expressions -------------------------------------------------------------------------------------------


def test_crontab_weekdays_count_from_sunday() -> None:
    # 2026-11-20 is a Friday
    assert [t.at.strftime("%a %d") for t in CronSchedule("0 9 * * 0", "UTC").ticks(utc(2026, 11, 20), limit=2)] == \
        ["Sun 22", "Sun 29"]
    assert [t.at.strftime("%a") for t in CronSchedule("0 9 * * 1-5", "UTC").ticks(utc(2026, 11, 20, 12), limit=3)] \
        == ["Mon", "Tue", "Wed"]
    assert [t.at.strftime("%a") for t in CronSchedule("0 9 * * 5-7", "UTC").ticks(utc(2026, 11, 20, 12), limit=3)] \
        == ["Sat", "Sun", "Fri"]
    assert [t.at.strftime("%a") for t in CronSchedule("0 9 * * sat,sun", "UTC").ticks(utc(2026, 11, 23), limit=2)] \
        == ["Sat", "Sun"]


def test_day_of_month_and_weekday_match_when_either_does_as_in_cron() -> None:
    # 2026-06-01 is a Monday; cron fires on every 1st and every Monday
    days = [f"{t.at:%a %d}" for t in CronSchedule("0 0 1 * mon", "UTC").ticks(utc(2026, 6, 1, 12), limit=5)]
    assert days == ["Mon 08", "Mon 15", "Mon 22", "Mon 29", "Wed 01"]


def test_macros_and_seconds() -> None:
    assert [f"{t.at:%H:%M:%S}" for t in CronSchedule("@hourly", "UTC").ticks(utc(2026, 1, 1, 0, 10), limit=2)] == \
        ["01:00:00", "02:00:00"]
    assert [f"{t.at:%S}" for t in CronSchedule("*/15 * * * * *", "UTC").ticks(utc(2026, 1, 1), limit=3)] == \
        ["15", "30", "45"]


@pytest.mark.parametrize("expr", ["* * * *", "61 * * * *", "* * * * 8", "not cron at all", "* * 32 * *"])
def test_invalid_expressions_are_refused(expr: str) -> None:
    with pytest.raises(ValueError, match="cron expression|weekday"):
        parse_cron(expr)


def test_schedule_errors_name_file_line_and_field(tmp_path: Path) -> None:
    make_project(tmp_path, rules="""\
        schedules:
          - name: ok
            cron: "0 3 * * *"
          - name: bad-cron
            cron: "0 25 * * *"
          - name: bad-zone
            cron: "0 3 * * *"
            timezone: Europe/Berln
          - name: typo
            cron: "0 3 * * *"
            catchup: lastest
          - name: ok
            cron: "@daily"
        """)

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    found = {(i.line, i.field): i.message for i in caught.value.issues}
    assert "higher than the maximum value (23)" in found[(5, "schedules[1].cron")]
    assert "unknown time zone 'Europe/Berln'" in found[(8, "schedules[2].timezone")]
    assert "'skip', 'latest' or 'all'" in found[(11, "schedules[3].catchup")]
    assert "already used" in found[(12, "schedules[4].name")]


def test_schedules_declared_in_python_join_the_project(tmp_path: Path) -> None:
    make_project(tmp_path, workflows={"jobs": """\
        from triggers.cron import schedule

        nightly = schedule("nightly", "30 2 * * *", timezone="Europe/Berlin", catchup="latest")
        """})

    project = load_project(tmp_path)

    assert project.schedules["nightly"].catchup == "latest"
    assert project.schedules["nightly"].source == "/schedules/nightly"


def test_reserved_data_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="scheduled_at are set by orch"):
        ScheduleConfig(name="x", cron="@daily", data={"scheduled_at": 1})


# -- catch-up decisions ----------------------------------------------------------------------------------


def every_second(**options: object) -> ScheduleConfig:
    return ScheduleConfig(name="tick", cron="* * * * * *", misfire_grace_s=2, **options)  # type: ignore[arg-type]


def test_on_time_ticks_fire() -> None:
    decisions, cursor = decide(every_second(), utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 0, 2))
    assert [(d.result, d.tick.at.second, d.missed_before) for d in decisions] == [("fired", 1, 0), ("fired", 2, 0)]
    assert cursor == utc(2026, 1, 1, 0, 0, 2)


@pytest.mark.parametrize(("policy", "expected"), [
    ("skip", [("missed", 7, 6), ("fired", 8, 0), ("fired", 9, 0), ("fired", 10, 0)]),
    ("latest", [("caught_up", 7, 6), ("fired", 8, 0), ("fired", 9, 0), ("fired", 10, 0)]),
    ("all", [("caught_up", s, 0) for s in range(1, 8)] + [("fired", 8, 0), ("fired", 9, 0), ("fired", 10, 0)]),
])
def test_missed_ticks_follow_the_catchup_policy(policy: str, expected: list[tuple[str, int, int]]) -> None:
    decisions, _ = decide(every_second(catchup=policy), utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 10))
    assert [(d.result, d.tick.at.second, d.missed_before) for d in decisions] == expected


def test_catchup_all_is_bounded_by_its_window() -> None:
    decisions, _ = decide(every_second(catchup="all", catchup_window_s=5), utc(2026, 1, 1),
                          utc(2026, 1, 1, 0, 0, 10))
    # ticks 1..4 are older than the 5 s window: counted missed before the first caught-up tick (5)
    assert [(d.result, d.tick.at.second, d.missed_before) for d in decisions][:2] == [("caught_up", 5, 4),
                                                                                      ("caught_up", 6, 0)]


def test_a_long_outage_is_counted_missed_in_chunks_and_latest_fires_once_at_the_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import triggers.cron.runner as cron

    monkeypatch.setattr(cron, "MAX_SCAN", 4)
    config = every_second(catchup="latest")
    first, cursor = decide(config, utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 10))
    assert [(d.result, d.tick.at.second, d.missed_before) for d in first] == [("missed", 4, 3)]
    second, cursor = decide(config, cursor, utc(2026, 1, 1, 0, 0, 10))
    third, _ = decide(config, cursor, utc(2026, 1, 1, 0, 0, 10))
    # ticks 5-8: 5-7 are late (the newest of them is the "latest"), 8 is within the 2 s grace
    assert [(d.result, d.tick.at.second, d.missed_before) for d in second] == [("caught_up", 7, 2), ("fired", 8, 0)]
    assert [(d.result, d.tick.at.second) for d in third] == [("fired", 9), ("fired", 10)]
