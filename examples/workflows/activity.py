"""Activity: workflows started by rules that hold events back (rules/activity.yaml).

    sync_profile      one run per customer once their profile edits settle (debounce), with every edit
    record_activity   one bulk write per batch of activity events (batch)
"""

from orchestrator import task, workflow


@task
def push_profile(customer_id: str, edits: int, fields: list) -> dict:
    """Push a customer's profile to the CRM once, after a burst of edits (here: say what would be pushed)."""
    return {"customer": customer_id, "edits_merged": edits, "fields": sorted(set(fields))}


@task
def write_rows(rows: list) -> int:
    """Write a batch of activity rows in one call (here: count them)."""
    return len(rows)


@workflow
def sync_profile(customer_id: str, edits: int = 1, fields: list = []):  # noqa: B006 - a default, never mutated
    push_profile(customer_id, edits, fields)


@workflow
def record_activity(rows: list = []):  # noqa: B006 - a default, never mutated
    write_rows(rows)
