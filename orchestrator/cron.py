"""Cron fire times: the pure calculation, DST included. The schedule model and the firing live beside their
runtime (triggers/cron/config.py, runner.py); this part is in the core because the API shows upcoming firings
too (`next_firings`), and the core never imports triggers/.

Fire times: APScheduler's CronTrigger computes the matching *wall-clock* times of the schedule's zone;
this module maps each wall time to real instants with these rules (the DST policy):

* A wall time that does not exist (spring forward: 02:30 on the night clocks jump from 02:00 to 03:00)
  fires at the instant it would have been without the jump, i.e. moved forward by the gap (03:30).
  If that instant is also another tick's, it fires once.
* A wall time that occurs twice (fall back: 02:30 on the night clocks go from 03:00 back to 02:00)
  fires at both instants when the hour field is `*` or a step (`*/2`), so hourly and sub-hourly
  schedules keep their rhythm in elapsed time; with fixed hours (e.g. `30 2 * * *`, a daily job) it
  fires once, at the first instant.
* Fire times are strictly increasing. `orch schedules next` and `next_firings` mark every tick a DST
  change moves, repeats or merges; `next_firings` also marks a tick whose UTC offset differs from the
  one before it.

Expressions: five crontab fields (minute hour day month weekday, weekday 0 or 7 = Sunday as in cron; as in
cron, a restricted day of month and a restricted weekday match when either does),
six fields with seconds first, or a macro (@hourly, @daily, @midnight, @weekly, @monthly, @yearly).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

__all__ = ["MAX_FIRINGS", "CronSchedule", "Tick", "next_firings", "parse_cron", "parse_cron_any"]

_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
           "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_ONE_US = timedelta(microseconds=1)
MAX_FIRINGS = 1000


def _weekday(token: str) -> int:
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7
    if token.lower()[:3] in _DAYS and len(token) == 3:
        return _DAYS.index(token.lower())
    raise ValueError(f"weekday {token!r} is not 0-7 or sun..sat")


def _crontab_weekdays(field: str) -> str:
    """Crontab weekdays (0 or 7 = Sunday) in APScheduler 3's names (whose 0 is Monday)."""
    if field in ("*", "?"):
        return "*"
    days: list[int] = []
    for item in field.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"weekday step {step_text!r} must be positive")
        if base in ("*", "?"):
            low, high = 0, 6
        elif "-" in base:
            first, last = base.split("-", 1)
            low, high = _weekday(first), _weekday(last)
            if last == "7" or high < low:
                high += 7
        else:
            low = high = _weekday(base)
        days.extend(d % 7 for d in range(low, high + 1, step))
    return ",".join(_DAYS[d] for d in sorted(set(days)))


def parse_cron(expr: str) -> CronTrigger:
    """A CronTrigger over naive wall-clock time (zone UTC) for a crontab expression; ValueError if invalid.

    (When both day of month and weekday are restricted, cron fires on either; see `parse_cron_any`.)
    """
    return parse_cron_any(expr)[0]


def parse_cron_any(expr: str) -> list[CronTrigger]:
    """The triggers whose union is the expression: two when both day of month and weekday are restricted,
    because crontab fires when *either* matches (`0 0 1 * mon`: every 1st and every Monday) while
    APScheduler's CronTrigger needs both."""
    text = _MACROS.get(expr.strip().lower(), expr.strip())
    fields = text.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(f"cron expression {expr!r} has {len(text.split())} fields; expected 5 (minute hour day "
                         "month weekday), 6 (with seconds first) or a macro such as @daily")
    second, minute, hour, day, month, weekdays = fields
    restricted = day not in ("*", "?") and weekdays not in ("*", "?")
    variants = [(day, "*"), ("*", weekdays)] if restricted else [(day, weekdays)]
    try:
        return [CronTrigger(second=second, minute=minute, hour=hour, day=d, month=month,
                            day_of_week=_crontab_weekdays(w), timezone=UTC) for d, w in variants]
    except ValueError as exc:
        raise ValueError(f"cron expression {expr!r}: {exc}") from None


@dataclass(frozen=True)
class Tick:
    """One firing: the instant (UTC), the same instant in the schedule's zone, and any DST note."""

    at: datetime
    local: datetime
    note: str | None = None


class CronSchedule:
    """Fire times of a cron expression in an IANA zone, following the DST policy above. Pure."""

    def __init__(self, expr: str, timezone: str | tzinfo = "UTC") -> None:
        self.expr = expr
        self.zone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self._triggers = parse_cron_any(expr)
        hour = next(str(f) for f in self._triggers[0].fields if f.name == "hour")
        self.hourly = hour.startswith("*")  # `*` or `*/n`: repeated wall times fire twice

    def _next_wall(self, wall: datetime) -> datetime | None:
        """The first matching wall time strictly after `wall` (naive)."""
        start = wall.replace(tzinfo=UTC) + _ONE_US
        found = [f for f in (t.get_next_fire_time(None, start) for t in self._triggers) if f is not None]
        return min(found).replace(tzinfo=None) if found else None

    def _instants(self, wall: datetime) -> list[tuple[datetime, str | None]]:
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if first == second:
            return [(first, None)]
        if first.astimezone(self.zone).replace(tzinfo=None) != wall:  # in a gap: fold=0 is after it
            return [(first, "moved")]
        if self.hourly:
            return [(first, "first"), (second, "second")]
        return [(first, "once")]

    def _local_wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone).replace(tzinfo=None)

    def _offset(self, instant: datetime) -> timedelta:
        return instant.astimezone(self.zone).utcoffset() or timedelta()

    def next_after(self, after: datetime) -> Tick | None:
        """The first tick strictly after `after` (aware), or None when the expression never fires again.

        For each UTC offset in play (around `after` and around the best tick found so far), the
        first wall time that could map to an instant after `after` under that offset is the start of a
        short forward scan; the earliest instant over all scans wins. Around a fold this finds the second
        pass of earlier wall times; elsewhere it costs one or two CronTrigger calls.
        """
        after = after.astimezone(UTC)
        naive = after.replace(tzinfo=None)
        hours = timedelta(hours=3)
        offsets = {self._offset(after - hours), self._offset(after), self._offset(after + hours)}
        tried: set[timedelta] = set()
        best: tuple[datetime, str | None, datetime] | None = None
        while offsets - tried:
            offset = min(offsets - tried)
            tried.add(offset)
            wall = self._next_wall(naive + offset)
            for _ in range(10_000):
                if wall is None:
                    break
                found = [(i, k) for i, k in self._instants(wall) if i > after]
                if found:
                    instant, kind = min(found, key=lambda f: f[0])
                    if best is None or instant < best[0]:
                        best = (instant, kind, wall)
                    elif instant == best[0] and "moved" in (kind, best[1]) and kind != best[1]:
                        # a wall time moved out of a DST gap onto a real one: one tick, named by the real one
                        moved, real = (wall, best[2]) if kind == "moved" else (best[2], wall)
                        best = (instant, f"merged {moved:%H:%M}", real)
                    break
                wall = self._next_wall(wall)
            if best is not None:
                offsets.update((self._offset(best[0]), self._offset(best[0] - hours)))
        if best is None:
            return None
        return Tick(best[0], best[0].astimezone(self.zone), self._note(best[2], best[1], best[0]))

    def _note(self, wall: datetime, kind: str | None, instant: datetime) -> str | None:
        day = f"{wall:%Y-%m-%d}"
        if kind == "moved":
            return f"moved: {wall:%H:%M} does not exist on {day} (DST gap), fires at {self._local_wall(instant):%H:%M}"
        if kind and kind.startswith("merged "):
            return (f"moved: {kind.removeprefix('merged ')} does not exist on {day} (DST gap) and fires once, "
                    f"with the {wall:%H:%M} tick")
        if kind == "first":
            return f"repeated: {wall:%H:%M} occurs twice on {day} (DST fold); this is the first"
        if kind == "second":
            return f"repeated: {wall:%H:%M} occurs twice on {day} (DST fold); this is the second"
        if kind == "once":
            return f"{wall:%H:%M} occurs twice on {day} (DST fold); fixed hours fire once, at the first"
        return None

    def ticks(self, after: datetime, until: datetime | None = None, limit: int | None = None) -> Iterator[Tick]:
        """Ticks strictly after `after` and at most `until`, in order (at most `limit`)."""
        count = 0
        while limit is None or count < limit:
            tick = self.next_after(after)
            if tick is None or (until is not None and tick.at > until):
                return
            yield tick
            after, count = tick.at, count + 1


def next_firings(cron: str, tz: str, now: datetime, n: int) -> list[dict[str, str | None]]:
    """The next `n` (at most MAX_FIRINGS) firings strictly after `now` (aware) of expression `cron` in zone `tz`:
    each `{"utc": ISO with Z, "local": ISO with the zone's offset, "dst": note or None}`. The note says what
    a DST change does to that firing (moved out of a gap, repeated or kept once in a fold, merged), else
    that its UTC offset differs from the previous firing's (for the first: from the offset at `now`).
    Raises ValueError for an invalid expression or zone, or a naive `now`."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    schedule = CronSchedule(cron, _zone(tz))
    previous = now.astimezone(schedule.zone).utcoffset()
    out: list[dict[str, str | None]] = []
    for tick in schedule.ticks(now, limit=max(0, min(n, MAX_FIRINGS))):
        offset = tick.local.utcoffset()
        note = tick.note
        if note is None and offset != previous:
            note = f"UTC offset {_offset(previous)} -> {_offset(offset)} (DST change since the previous firing)"
        out.append({"utc": tick.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                    "local": tick.local.isoformat(), "dst": note})
        previous = offset
    return out


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # OSError: a directory, e.g. "Europe"
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Berlin") from None


def _offset(value: timedelta | None) -> str:
    minutes = int((value or timedelta()).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
