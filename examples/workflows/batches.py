"""Settling a batch of payments: retries, fan-out with a cap, fan-in, a cleanup task and a run timeout.

    load_batch ──> settle[0..n] (at most 5 at once, each retried) ──> summarize
                                                        └──────────> flag_failures (only if one failed)
"""

from orchestrator import task, workflow
from orchestrator.context import current


@task
def load_batch(batch_id: str, size: int) -> list:
    """The payments of a batch (here: made up)."""
    return [{"batch": batch_id, "payment": f"{batch_id}-{i}", "amount": 10 + i} for i in range(size)]


@task(retries={"max_retries": 3, "backoff_s": 0.5, "on": ["ConnectionError"]}, timeout_s=30)
def settle(payment: dict) -> dict:
    """Settle one payment with a flaky bank: a ConnectionError is retried, with the same idempotency key.

    (Here every third payment fails on its first attempt, so the retries show in `orch runs show`.)
    """
    ctx = current()
    if ctx.attempt == 1 and int(payment["payment"].rsplit("-", 1)[1]) % 3 == 0:
        raise ConnectionError(f"the bank did not answer (attempt {ctx.attempt})")
    ctx.logger.info("settled %s with idempotency key %s", payment["payment"], ctx.key)
    return {"payment": payment["payment"], "settled": payment["amount"], "key": ctx.key}


@task
def summarize(settled: list) -> dict:
    return {"payments": len(settled), "total": sum(s["settled"] for s in settled)}


@task
def flag_failures(batch_id: str) -> str:
    """Runs only when settling failed for good: tell someone."""
    return f"batch {batch_id} needs a look"


@workflow(timeout_s=600, concurrency=2)  # at most two batches settle at once; more wait, queued
def settle_batch(batch_id: str, size: int = 8):
    payments = load_batch(batch_id, size)
    settled = settle.with_options(max_parallel=5).map(payments)
    summarize(settled)
    flag_failures.with_options(depends="any_failed", after=[settled])(batch_id)
