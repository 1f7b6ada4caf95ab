"""A cron schedule as a project declares it: in YAML (`schedules:`) or in Python (`schedule(...)`).

    schedules:
      - name: nightly-report            # events come from /schedules/nightly-report
        cron: "0 3 * * *"               # 5 crontab fields, 6 with seconds first, or @daily etc.
        timezone: Europe/Berlin         # the IANA zone the expression is read in (DST: see orchestrator/cron.py)
        catchup: latest                 # ticks missed while no `orch triggers` ran: skip, latest, all
        overlap: skip                   # a tick while the previous run still runs: allow, skip, queue-one

    # in a workflows/*.py module:
    from triggers.cron import schedule
    weekly = schedule("weekly-cleanup", "0 4 * * sun", timezone="America/New_York")

The `orch triggers` processes (runner.py) publish one `schedule.fired` event per tick.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.catalog.model import ScheduleEntry
from orchestrator.cron import CronSchedule, parse_cron
from orchestrator.project import Section

__all__ = ["RESERVED_DATA_KEYS", "SECTION", "ScheduleConfig", "schedule"]

RESERVED_DATA_KEYS = ("schedule", "scheduled_at", "scheduled_at_local", "timezone", "fired_at", "missed", "dst")


class ScheduleConfig(BaseModel):
    """One cron schedule: each tick publishes a `schedule.fired` event (source `/schedules/<name>`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=200)
    cron: str = Field(description="Crontab expression (5 fields, or 6 with seconds first, or @daily etc.).")
    timezone: str = Field(default="UTC", description="IANA zone the expression is read in, e.g. Europe/Berlin.")
    data: dict[str, Any] = Field(default_factory=dict, description="Extra event data, merged into every tick's.")
    enabled: bool = True
    type: str = Field(default="schedule.fired", min_length=1, description="Event type of the ticks.")
    catchup: Literal["skip", "latest", "all"] = Field(
        default="skip", description="Ticks missed while no `orch triggers` ran: none, the latest one, or each.")
    catchup_window_s: float = Field(default=86400.0, gt=0, description="With catchup all: how far back to go.")
    misfire_grace_s: float = Field(default=30.0, gt=0,
                                   description="A tick fired later than this after its time counts as missed.")
    overlap: Literal["allow", "skip", "queue-one"] = Field(
        default="allow", description="May a tick start a run while the schedule's previous run still runs?")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as UTC or Europe/Berlin") from None
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        parse_cron(value)
        return value

    @field_validator("data")
    @classmethod
    def _data(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(value) & set(RESERVED_DATA_KEYS))
        if clash:
            raise ValueError(f"keys {', '.join(clash)} are set by orch on every tick; rename them")
        return value

    @model_validator(mode="after")
    def _type(self) -> ScheduleConfig:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", self.type):
            raise ValueError(f"type {self.type!r} may only hold letters, digits and . _ : -")
        return self

    @cached_property
    def trigger(self) -> CronSchedule:
        return CronSchedule(self.cron, self.timezone)

    @property
    def source(self) -> str:
        return f"/schedules/{self.name}"

    def catalog_entry(self) -> ScheduleEntry:
        """What the project catalogue shows of this schedule (orchestrator/catalog)."""
        return ScheduleEntry(name=self.name, cron=self.cron, timezone=self.timezone, enabled=self.enabled,
                             type=self.type, source=self.source, catchup=self.catchup, overlap=self.overlap)


def schedule(name: str, cron: str, *, timezone: str = "UTC", **options: Any) -> ScheduleConfig:
    """Declare a schedule in Python: assign the result to a module-level name in `workflows/*.py`.

        nightly = schedule("nightly-report", "0 3 * * *", timezone="Europe/Berlin", catchup="latest")
    """
    return ScheduleConfig(name=name, cron=cron, timezone=timezone, **options)


SECTION = Section("schedules", ScheduleConfig, python_type=ScheduleConfig)
