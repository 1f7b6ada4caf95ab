"""① Cron schedules: the model (config.py) and the replicas' firing loop (runner.py): each tick is one event,
fired once. The pure fire-time calculation with its DST policy is in the core (orchestrator/cron.py), where
the API computes upcoming firings too; it is re-exported here."""

from orchestrator.cron import CronSchedule, Tick, parse_cron

from .config import SECTION, ScheduleConfig, schedule
from .runner import CronRunner, Decision, decide, tick_event

__all__ = ["SECTION", "CronRunner", "CronSchedule", "Decision", "ScheduleConfig", "Tick", "decide", "parse_cron",
           "schedule", "tick_event"]
