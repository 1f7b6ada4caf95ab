"""① Cron schedules: the model (config.py), the pure fire-time calculation with its DST policy
(calendar.py), and the replicas' firing loop (runner.py): each tick is one event, fired once."""

from .calendar import CronSchedule, Tick, parse_cron
from .config import SECTION, ScheduleConfig, schedule
from .runner import CronRunner, Decision, decide, tick_event

__all__ = ["SECTION", "CronRunner", "CronSchedule", "Decision", "ScheduleConfig", "Tick", "decide", "parse_cron",
           "schedule", "tick_event"]
