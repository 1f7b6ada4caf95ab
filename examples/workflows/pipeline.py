"""A chain of two workflows: when `ingest` succeeds, `report` runs (rules/chains.yaml).

    dataset.uploaded ──> ingest: fetch_rows -> store_rows
                           │ orch.run.succeeded (source /runs/ingest)
                           └──> report: summarize_dataset

`report` starts from the lifecycle event `ingest` announces when it succeeds; the rule reads the ingest
run's parameters and id from the event's data:
    orch emit dataset.uploaded --project examples --data '{"dataset": "sales-2024-05", "rows": 3}'
"""

from orchestrator import task, workflow


@task
def fetch_rows(dataset: str, rows: int) -> list:
    """Read the uploaded rows (here: make them up)."""
    return [{"dataset": dataset, "row": i, "amount": 10 * (i + 1)} for i in range(rows)]


@task
def store_rows(dataset: str, rows: list) -> dict:
    """Store the rows (here: count them)."""
    return {"dataset": dataset, "stored": len(rows), "total": sum(r["amount"] for r in rows)}


@workflow
def ingest(dataset: str, rows: int = 3):
    store_rows(dataset, fetch_rows(dataset, rows))


@task
def summarize_dataset(dataset: str, ingest_run: str, ingest_duration_s: float) -> str:
    """The report: which dataset, and the ingest run that produced it."""
    return f"report on {dataset}: ingested by run {ingest_run} in {ingest_duration_s:.3f} s"


@workflow
def report(dataset: str, ingest_run: str, ingest_duration_s: float = 0.0):
    summarize_dataset(dataset, ingest_run, ingest_duration_s)
