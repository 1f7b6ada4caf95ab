"""The benchmark's workflows: no-op tasks, so only orchestration is measured.

    bench_one      one task (end-to-end throughput, idle emit -> start latency)
    bench_chain    a -> b, two no-op tasks (hop latency: a done -> b started)
    bench_fanout   items -> work.map(items) -> fan_in (a fan-out of n no-op items, then a fan-in)
"""

from typing import Any

from orchestrator import task, workflow


@task
def noop(value: Any = None) -> Any:
    """Return the argument unchanged."""
    return value


@task
def items(n: int) -> list[int]:
    """The fan-out's items: 0 .. n-1."""
    return list(range(n))


@task
def work(item: Any) -> Any:
    """One fan-out item: return it unchanged."""
    return item


@task
def fan_in(results: list[Any]) -> int:
    """The fan-in: receives every item's result; returns how many there were."""
    return len(results)


@workflow
def bench_one(value: Any = None) -> None:
    noop(value)


@workflow
def bench_chain(value: Any = None) -> None:
    first = noop.with_options(name="a")(value)
    noop.with_options(name="b")(first)


@workflow
def bench_fanout(n: int = 1000) -> None:
    listed = items(n)
    done = work.map(listed)
    fan_in(done)
