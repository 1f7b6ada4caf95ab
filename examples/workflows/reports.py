"""Scheduled work: a nightly digest (declared in rules/schedules.yaml) and a heartbeat.

    collect_figures ──> render_digest

Schedules can also be declared in Python: assign `schedule(...)` to a module-level name.
"""

from orchestrator import task, workflow
from triggers.cron import schedule

weekly_cleanup = schedule("weekly-cleanup", "0 4 * * sun", timezone="America/New_York", catchup="skip")


@task
def collect_figures(report: str, period_end: str) -> dict:
    """Gather the figures of the period that ended at `period_end` (here: a fixed sample)."""
    return {"report": report, "period_end": period_end, "orders": 42, "revenue": 1234.5}


@task
def render_digest(figures: dict) -> str:
    return (f"{figures['report']} until {figures['period_end']}: {figures['orders']} orders, "
            f"{figures['revenue']:.2f} revenue")


@workflow
def build_digest(report: str, period_end: str):
    render_digest(collect_figures(report, period_end))


@task
def beat(at: str) -> dict:
    return {"alive_at": at}


@workflow
def heartbeat(at: str):
    beat(at)
